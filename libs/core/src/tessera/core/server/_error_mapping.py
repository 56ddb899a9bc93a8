"""The one boundary where errors raised by servicers become gRPC statuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import grpc
import structlog
from grpc_status import rpc_status

from tessera.core._errors import TesseraError
from tessera.core.server._call_scope import CallScopeInterceptor, RpcMethod, ServicerContext

_log = structlog.get_logger("tessera.core.server")

#: The status message of every unexpected error: what went wrong stays in the server's log.
INTERNAL_ERROR_MESSAGE = "internal error"


class ErrorMappingInterceptor(CallScopeInterceptor):
    """Turn exceptions from servicers into gRPC statuses; works for unary and streaming calls.

    - A `TesseraError` ends the call with its `code` and message, and a
      `grpc-status-details-bin` trailer holding `TesseraError.to_rpc_status()` (for a
      `ValidationError`, a `google.rpc.BadRequest` naming the fields). Logged without a traceback,
      at warning level when retryable (a sign of trouble on the server's side), else info.
    - A status set by the servicer itself (`context.abort`) passes through unchanged.
    - Any other exception ends the call with INTERNAL and the message "internal error", so no
      internals leak; it is logged with its traceback.

    The metrics interceptor, outside this one, counts every resulting code.
    """

    def call_scope(
        self, method: RpcMethod, context: ServicerContext
    ) -> AbstractAsyncContextManager[None]:
        """Map what the call raises."""
        return _mapped_errors(context)


@asynccontextmanager
async def _mapped_errors(context: ServicerContext) -> AsyncIterator[None]:
    try:
        yield
    except grpc.aio.AbortError:
        raise
    except TesseraError as error:
        log = _log.warning if error.retryable else _log.info
        log(
            "rpc failed",
            code=error.code.name,
            error=type(error).__name__,
            message=error.message,
        )
        status = rpc_status.to_status(error.to_rpc_status())
        await context.abort(status.code, status.details, status.trailing_metadata)
    except Exception as error:
        _log.exception("rpc failed with an unexpected error", error=type(error).__name__)
        await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_ERROR_MESSAGE)
