"""Binds the call's method and peer to the structlog context of the request."""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

import structlog

from tessera.core.server._call_scope import CallScopeInterceptor, RpcMethod, ServicerContext


class RequestContextInterceptor(CallScopeInterceptor):
    """Bind `method` (`/package.Service/Method`) and `peer` for every log line of a call.

    The values are structlog context variables, set for the task that runs the call and reset
    to what they were when it ends, so lines from different concurrent calls never mix.
    """

    def call_scope(
        self, method: RpcMethod, context: ServicerContext
    ) -> AbstractAsyncContextManager[None]:
        """Bind the call's method and peer while it runs."""
        return _BoundRequest(method.path, context.peer())


class _BoundRequest:
    """Binds one call's method and peer.

    Not structlog's `bound_contextvars`: to restore the keys it binds, that copies the whole
    context on every call; the tokens `bind_contextvars` returns do it for a fraction.
    """

    __slots__ = ("_method", "_peer", "_tokens")

    def __init__(self, method: str, peer: str) -> None:
        self._method = method
        self._peer = peer
        self._tokens: Mapping[str, contextvars.Token[Any]] = {}

    async def __aenter__(self) -> None:
        self._tokens = structlog.contextvars.bind_contextvars(method=self._method, peer=self._peer)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:  # noqa: SIM105 - contextlib.suppress would cost an object on every call
            structlog.contextvars.reset_contextvars(**self._tokens)
        except ValueError:
            # Raised when this runs in another context than __aenter__ did: the event loop
            # closing an abandoned streaming call in a task of its own. The call's context
            # ended with the call's task, and nothing was bound in this one.
            pass
