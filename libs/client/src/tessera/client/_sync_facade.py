"""The blocking facades' engine: an async client driven from sync code through a loop thread.

`SyncFacade` owns an asyncio event loop running in a daemon thread, and the async client it
opens on that loop (grpc.aio channels belong to the loop that created them). `_run` hands a
coroutine to the loop and blocks the calling thread until it finishes, returning its result or
raising its exception unchanged, so a facade's methods keep the async client's errors. Any
number of threads may call one facade at once; background tasks of the client (keep-alives,
watches) keep running on the loop while callers block.

`close` (also on leaving `with`) closes the client on the loop, then stops the loop and joins
the thread even when closing the client failed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

T = TypeVar("T")


class _Closable(Protocol):
    async def close(self) -> None: ...


ClientT = TypeVar("ClientT", bound=_Closable)


class SyncFacade(Generic[ClientT]):
    """Base of the SDK's blocking facades over an async client.

    Args:
        open_client: Builds the async client; called on the facade's loop.
        thread_name: Name of the loop thread (it shows in thread dumps).
        timeout_s: Longest a blocking call, and `close`'s join of the thread, waits; None waits
            as long as the work takes.

    Raises:
        Whatever `open_client` raises; the loop thread is stopped first.

    """

    def __init__(
        self,
        open_client: Callable[[], ClientT],
        *,
        thread_name: str,
        timeout_s: float | None = None,
    ) -> None:
        self._timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=thread_name, daemon=True
        )
        self._thread.start()

        async def on_loop() -> ClientT:
            # The client's channels must be created on the loop that will use them.
            return open_client()

        try:
            self._client: ClientT = self._run(on_loop())
        except BaseException:
            self._stop_loop()
            raise

    def close(self) -> None:
        """Close the client (see `_close_client`) and stop the loop thread."""
        try:
            self._run(self._close_client())
        finally:
            self._stop_loop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    async def _close_client(self) -> None:
        # Facades that own more than the client (watches, keep-alives) close those first.
        await self._client.close()

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(self._timeout_s)

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self._timeout_s)
        self._loop.close()
