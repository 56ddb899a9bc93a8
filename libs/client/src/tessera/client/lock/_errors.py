from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

from tessera.core import (
    AbortedError,
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    TesseraError,
    UnauthenticatedError,
    UnavailableError,
    ValidationError,
)

_BY_CODE: dict[grpc.StatusCode, type[TesseraError]] = {
    cls.code: cls
    for cls in (
        NotFoundError,
        AlreadyExistsError,
        FailedPreconditionError,
        AbortedError,
        ResourceExhaustedError,
        PermissionDeniedError,
        UnauthenticatedError,
        DeadlineExceededError,
        UnavailableError,
    )
}
_DETAILS_KEY = "grpc-status-details-bin"


class StaleTokenError(FailedPreconditionError):
    """A write carried a fencing token older than one the resource has already seen.

    Attributes:
        token: The rejected token.
        highest: The largest token the resource has seen.

    """

    def __init__(self, token: int, highest: int) -> None:
        super().__init__(f"fencing token {token} is stale: the resource has seen {highest}")
        self.token = token
        self.highest = highest


def rpc_error(error: grpc.aio.AioRpcError) -> TesseraError:
    """Translate a failed call into the core error tree, keeping field violations."""
    code = error.code()
    message = error.details() or code.name
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        violations = _field_violations(error)
        return (
            ValidationError(violations, message=message) if violations else ValidationError(message)
        )
    cls = _BY_CODE.get(code, TesseraError)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return cls(message, retryable=True)
    return cls(message)


def _field_violations(error: grpc.aio.AioRpcError) -> list[FieldViolation]:
    for key, value in error.trailing_metadata() or ():
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                request = error_details_pb2.BadRequest()
                detail.Unpack(request)
                return [FieldViolation(v.field, v.description) for v in request.field_violations]
    return []
