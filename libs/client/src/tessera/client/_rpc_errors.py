"""How every SDK package turns a failed gRPC call into the core error tree.

The services send a `TesseraError` as its status code and message plus a `google.rpc.Status`
in the `grpc-status-details-bin` trailer (`TesseraError.to_rpc_status`): `BadRequest` field
violations, `PreconditionFailure` violations and an `ErrorInfo` whose reason names the error
class. `rpc_error` reads both back (`status_error` does the same for a status carried in a
message):

- the status code picks the core class (`NOT_FOUND` -> `NotFoundError`, ...); a code with no
  class (UNKNOWN, INTERNAL, CANCELLED, ...) becomes a plain, non-retryable `TesseraError`;
- INVALID_ARGUMENT keeps the field violations (`ValidationError.violations`);
- retryability is the class's: UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED and RESOURCE_EXHAUSTED
  are retryable.

A package with errors of its own (governance's `ContractRefusedError`) reads `status_details`
first and falls back to `rpc_error`. `translated` awaits a call and raises its translation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

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

T = TypeVar("T")

#: The trailer that carries the serialized `google.rpc.Status`.
STATUS_DETAILS_KEY = "grpc-status-details-bin"

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


_CODES: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


@dataclass(frozen=True, slots=True)
class StatusDetails:
    """The `google.rpc.Status` details a failed call carried (empty when it carried none).

    Attributes:
        field_violations: `BadRequest` field violations, in order.
        precondition_violations: `PreconditionFailure` violations, in order.
        reasons: `ErrorInfo` reasons: the names of the service's error classes.

    """

    field_violations: tuple[FieldViolation, ...] = ()
    precondition_violations: tuple[error_details_pb2.PreconditionFailure.Violation, ...] = ()
    reasons: frozenset[str] = frozenset()


def status_details(error: grpc.aio.AioRpcError) -> StatusDetails:
    """Decode the rich status details from a failed call's trailing metadata.

    Details of other kinds, and a trailer that is not bytes, are ignored.
    """
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            return _details(status_pb2.Status.FromString(value))
    return StatusDetails()


def status_error(status: status_pb2.Status) -> TesseraError:
    """Translate a `google.rpc.Status` carried in a message (not a call's) into the error tree.

    The same mapping as `rpc_error`: for results of several requests sent over one stream, such
    as the lock service's Commands, each of which may fail on its own.
    """
    code = _CODES.get(status.code, grpc.StatusCode.UNKNOWN)
    return _error(code, status.message or code.name, _details(status))


def _details(status: status_pb2.Status) -> StatusDetails:
    fields: list[FieldViolation] = []
    preconditions: list[error_details_pb2.PreconditionFailure.Violation] = []
    reasons: set[str] = set()
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields.extend(
                FieldViolation(v.field, v.description) for v in bad_request.field_violations
            )
        elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            failure = error_details_pb2.PreconditionFailure()
            detail.Unpack(failure)
            preconditions.extend(failure.violations)
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reasons.add(info.reason)
    return StatusDetails(tuple(fields), tuple(preconditions), frozenset(reasons))


def rpc_error(
    error: grpc.aio.AioRpcError,
    *,
    message: str | None = None,
    details: StatusDetails | None = None,
) -> TesseraError:
    """Translate a failed call into the core error tree (see the module docstring).

    Args:
        error: The failed call.
        message: The error's message; by default the status message, or the code's name when
            the status has none.
        details: The call's decoded details, when the caller has already read them.

    Returns:
        The error to raise; never raises itself.

    """
    code = error.code()
    if message is None:
        message = error.details() or code.name
    if code is grpc.StatusCode.INVALID_ARGUMENT and details is None:
        details = status_details(error)
    return _error(code, message, details)


def _error(code: grpc.StatusCode, message: str, details: StatusDetails | None) -> TesseraError:
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        violations = details.field_violations if details is not None else ()
        return (
            ValidationError(violations, message=message) if violations else ValidationError(message)
        )
    return _BY_CODE.get(code, TesseraError)(message)


async def translated(
    call: Awaitable[T], translate: Callable[[grpc.aio.AioRpcError], TesseraError] = rpc_error
) -> T:
    """Await a unary call and return its reply.

    Raises:
        TesseraError: `translate(error)` of the call's `grpc.aio.AioRpcError`, chained to it.

    """
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        raise translate(error) from error
