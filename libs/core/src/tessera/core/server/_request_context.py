"""Binds the call's method and peer to the structlog context of the request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import structlog

from tessera.core.server._call_scope import CallScopeInterceptor, RpcMethod, ServicerContext


class RequestContextInterceptor(CallScopeInterceptor):
    """Bind `method` (`/package.Service/Method`) and `peer` for every log line of a call.

    The values are structlog context variables, set for the task that runs the call and reset
    when it ends, so lines from different concurrent calls never mix.
    """

    def call_scope(
        self, method: RpcMethod, context: ServicerContext
    ) -> AbstractAsyncContextManager[None]:
        """Bind the call's method and peer while it runs."""
        return _bound(method.path, context.peer())


@asynccontextmanager
async def _bound(method: str, peer: str) -> AsyncIterator[None]:
    with structlog.contextvars.bound_contextvars(method=method, peer=peer):
        yield
