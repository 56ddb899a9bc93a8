"""The one boundary where errors raised by servicers become gRPC statuses."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from types import TracebackType

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
        return _MappedErrors(context)


class _MappedErrors:
    """Maps what one call raises."""

    __slots__ = ("_context",)

    def __init__(self, context: ServicerContext) -> None:
        self._context = context

    async def __aenter__(self) -> None:
        pass

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Cancellation, GeneratorExit and a status the servicer set with context.abort pass on.
        if not isinstance(exc, Exception) or isinstance(exc, grpc.aio.AbortError):
            return
        if isinstance(exc, TesseraError):
            log = _log.warning if exc.retryable else _log.info
            log("rpc failed", code=exc.code.name, error=type(exc).__name__, message=exc.message)
            status = rpc_status.to_status(exc.to_rpc_status())
            await self._context.abort(status.code, status.details, status.trailing_metadata)
        else:
            # The traceback comes from sys.exc_info(), which holds `exc` while __aexit__ runs.
            _log.exception("rpc failed with an unexpected error", error=type(exc).__name__)
            await self._context.abort(grpc.StatusCode.INTERNAL, INTERNAL_ERROR_MESSAGE)
