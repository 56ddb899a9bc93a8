from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

from tessera.client.governance._model import Incompatibility, LintViolation
from tessera.core import (
    AbortedError,
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


class ContractRefusedError(FailedPreconditionError):
    """The service refused a contract version that breaks its subject's mode or standard.

    The version is refused when it breaks the subject's compatibility mode, or the standard the
    subject requires under policy REJECT; nothing was stored.

    Attributes:
        incompatibilities: Compatibility problems (path, kind, reason, version compared with).
        violations: Standard violations (path, rule, message).

    """

    def __init__(
        self,
        message: str,
        incompatibilities: list[Incompatibility],
        violations: list[LintViolation] | None = None,
    ) -> None:
        super().__init__(message)
        self.incompatibilities = incompatibilities
        self.violations = violations or []


def rpc_error(error: grpc.aio.AioRpcError) -> TesseraError:
    """Translate a failed governance call into the core error tree, keeping its details."""
    code = error.code()
    message = error.details() or code.name
    details = _details(error)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        violations = [
            FieldViolation(v.field, v.description)
            for detail in details
            if isinstance(detail, error_details_pb2.BadRequest)
            for v in detail.field_violations
        ]
        return (
            ValidationError(violations, message=message) if violations else ValidationError(message)
        )
    if code is grpc.StatusCode.FAILED_PRECONDITION:
        refused = [
            violation
            for detail in details
            if isinstance(detail, error_details_pb2.PreconditionFailure)
            for violation in detail.violations
        ]
        # The service names the error class in ErrorInfo.reason.
        reasons = {d.reason for d in details if isinstance(d, error_details_pb2.ErrorInfo)}
        if refused and "StandardViolationError" in reasons:
            lint = [LintViolation(v.subject, v.type, v.description) for v in refused]
            return ContractRefusedError(message, [], lint)
        if refused:
            return ContractRefusedError(
                message, [Incompatibility.from_violation(v) for v in refused]
            )
    cls = _BY_CODE.get(code, TesseraError)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return cls(message, retryable=True)
    return cls(message)


def _details(error: grpc.aio.AioRpcError) -> list[object]:
    found: list[object] = []
    for key, value in error.trailing_metadata() or ():
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        for detail in status_pb2.Status.FromString(value).details:
            for kind in (
                error_details_pb2.BadRequest,
                error_details_pb2.PreconditionFailure,
                error_details_pb2.ErrorInfo,
            ):
                if detail.Is(kind.DESCRIPTOR):
                    message = kind()
                    detail.Unpack(message)
                    found.append(message)
    return found
