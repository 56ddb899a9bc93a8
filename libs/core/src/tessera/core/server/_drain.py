"""Graceful shutdown: refuse new calls and wait for the running ones."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from types import TracebackType

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
        self._calls = _RunningCalls()

    @property
    def running(self) -> int:
        """How many counted calls are running now."""
        return self._calls.count

    def applies_to(self, method: RpcMethod) -> bool:
        """Every service but the exempt ones passes the gate."""
        return method.service not in self._exempt

    def call_scope(
        self, method: RpcMethod, context: ServicerContext
    ) -> AbstractAsyncContextManager[None]:
        """Count the call while it runs, or refuse it when the gate is closed."""
        return self._calls

    def close(self) -> None:
        """Refuse every call that starts from now on; running calls go on."""
        self._calls.closed = True

    async def wait_idle(self) -> None:
        """Return once no counted call runs; bound the wait with `asyncio.timeout`."""
        await self._calls.idle.wait()


class _RunningCalls:
    """The gate's count, and the scope of every call it counts.

    It holds no state of any one call, so one instance serves them all.
    """

    __slots__ = ("closed", "count", "idle")

    def __init__(self) -> None:
        self.closed = False
        self.count = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def __aenter__(self) -> None:
        if self.closed:
            raise UnavailableError("server is shutting down")
        self.count += 1
        self.idle.clear()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.count -= 1
        if not self.count:
            self.idle.set()
