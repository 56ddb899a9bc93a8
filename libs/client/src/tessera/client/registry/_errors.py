from __future__ import annotations

import grpc

from tessera.client import _rpc_errors
from tessera.core import TesseraError


def rpc_error(error: grpc.aio.AioRpcError) -> TesseraError:
    """Turn a failed registry call into the error of the Tessera tree its status stands for.

    The message is prefixed with the status code's name. UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED
    and RESOURCE_EXHAUSTED are retryable; an unknown or INTERNAL status becomes a plain,
    non-retryable `TesseraError`; INVALID_ARGUMENT keeps the field violations.
    """
    message = f"{error.code().name}: {error.details() or 'no detail'}"
    return _rpc_errors.rpc_error(error, message=message)
