from __future__ import annotations

import grpc

from tessera.core import (
    AbortedError,
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    TesseraError,
    UnauthenticatedError,
    UnavailableError,
    ValidationError,
)

_BY_CODE: dict[grpc.StatusCode, type[TesseraError]] = {
    error.code: error
    for error in (
        ValidationError,
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


def rpc_error(error: grpc.aio.AioRpcError) -> TesseraError:
    """Turn a failed registry call into the error of the Tessera tree its status stands for.

    UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED and RESOURCE_EXHAUSTED are retryable; an unknown or
    INTERNAL status becomes a plain, non-retryable `TesseraError`.
    """
    kind = _BY_CODE.get(error.code(), TesseraError)
    message = f"{error.code().name}: {error.details() or 'no detail'}"
    return kind(message) if kind is not TesseraError else TesseraError(message, retryable=False)
