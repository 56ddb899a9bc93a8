from __future__ import annotations

import asyncio

import aetcd
import grpc

from tessera.core._errors import BackendError

# Codes after which the same call may succeed: the member is unreachable, overloaded or slow.
TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)

#: What aetcd and gRPC raise when an etcd call fails.
ETCD_ERRORS = (aetcd.ClientError, grpc.aio.AioRpcError, asyncio.TimeoutError)


def etcd_error(error: BaseException, endpoint: str) -> BackendError:
    """Translate an aetcd or gRPC error into `BackendError(backend="etcd")`.

    Retryable when the member was unreachable, overloaded or too slow.
    """
    code = _status_code(error)
    retryable = code in TRANSIENT_CODES or isinstance(
        error,
        (aetcd.ConnectionFailedError, aetcd.ConnectionTimeoutError, asyncio.TimeoutError),
    )
    detail = error.details() if isinstance(error, grpc.aio.AioRpcError) else str(error)
    name = code.name if code is not None else type(error).__name__
    return BackendError(
        f"etcd {endpoint}: {name}: {detail or 'no detail'}", backend="etcd", retryable=retryable
    )


def _status_code(error: BaseException) -> grpc.StatusCode | None:
    # aetcd raises its own errors chained to the gRPC one, which has the status code.
    for candidate in (error, error.__cause__):
        if isinstance(candidate, grpc.aio.AioRpcError):
            return candidate.code()
    return None
