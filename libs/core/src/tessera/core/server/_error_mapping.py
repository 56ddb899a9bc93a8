"""The one boundary where errors raised by servicers become gRPC statuses."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from types import TracebackType

import grpc
import structlog
from google.rpc import status_pb2
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
        status = rpc_status.to_status(error_status(exc, "rpc failed"))
        if isinstance(exc, TesseraError):
            await self._context.abort(status.code, status.details, status.trailing_metadata)
        else:
            await self._context.abort(status.code, status.details)


def error_status(error: Exception, event: str) -> status_pb2.Status:
    """Log an error a request ended with and return the status that reports it to the client.

    The one mapping of errors to statuses: the error-mapping interceptor ends calls with it, and a
    stream that answers several requests (the lock service's Commands) puts it in a message.

    Args:
        error: What the request raised.
        event: The log event, e.g. "rpc failed".

    Returns:
        For a `TesseraError`, `TesseraError.to_rpc_status()` (its code, message and details),
        logged without a traceback at warning level when retryable, else info. For any other
        error, INTERNAL with the message "internal error", so no internals leak; logged with its
        traceback (call this inside the `except` block or `__aexit__` that caught it).

    """
    if isinstance(error, TesseraError):
        log = _log.warning if error.retryable else _log.info
        log(event, code=error.code.name, error=type(error).__name__, message=error.message)
        return error.to_rpc_status()
    # The traceback comes from sys.exc_info(), which holds `error` while it is being handled.
    _log.exception(f"{event} with an unexpected error", error=type(error).__name__)
    return status_pb2.Status(code=grpc.StatusCode.INTERNAL.value[0], message=INTERNAL_ERROR_MESSAGE)
