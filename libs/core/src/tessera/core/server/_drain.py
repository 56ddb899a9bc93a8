"""Graceful shutdown: refuse new calls and wait for the running ones."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from tessera.core._errors import UnavailableError
from tessera.core.server._call_scope import CallScopeInterceptor, RpcMethod, ServicerContext


class DrainGate(CallScopeInterceptor):
    """Counts running calls; once closed, refuses new ones with UNAVAILABLE.

    Calls of `exempt_services` are neither counted nor refused: health checks must keep answering
    (NOT_SERVING) while the server drains, and long-lived health watches or reflection streams
    must not hold the shutdown up. Lives on the server's event loop; not thread-safe.

    Args:
        exempt_services: Full names of the services the gate ignores.

    """

    def __init__(self, exempt_services: frozenset[str]) -> None:
        super().__init__()
        self._exempt = exempt_services
        self._closed = False
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def running(self) -> int:
        """How many counted calls are running now."""
        return self._running

    def applies_to(self, method: RpcMethod) -> bool:
        """Every service but the exempt ones passes the gate."""
        return method.service not in self._exempt

    def call_scope(
        self, method: RpcMethod, context: ServicerContext
    ) -> AbstractAsyncContextManager[None]:
        """Count the call while it runs, or refuse it when the gate is closed."""
        return self._counted()

    def close(self) -> None:
        """Refuse every call that starts from now on; running calls go on."""
        self._closed = True

    async def wait_idle(self) -> None:
        """Return once no counted call runs; bound the wait with `asyncio.timeout`."""
        await self._idle.wait()

    @asynccontextmanager
    async def _counted(self) -> AsyncIterator[None]:
        if self._closed:
            raise UnavailableError("server is shutting down")
        self._running += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._running -= 1
            if not self._running:
                self._idle.set()
