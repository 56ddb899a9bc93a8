from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self, TypeVar

from tessera.client.lock._client import HeldLock, LockClient, Mode

T = TypeVar("T")


class SyncLockClient:
    """Blocking facade over `LockClient` for code without an event loop.

    The async client runs on an event loop in a daemon thread owned by this object, which also
    keeps sessions alive while the calling thread works (or blocks). Thread-safe: any thread may
    call it.

    Args:
        target: The lock service, `host:port`.

    Example::

        with SyncLockClient("127.0.0.1:50052") as client, client.lock("orders", ttl=10) as held:
            resource.write(data, fencing_token=held.token)

    """

    def __init__(self, target: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tessera-lock-client", daemon=True
        )
        self._thread.start()
        self._client = self._run(self._connect(target))

    def close(self) -> None:
        """Close the client and stop its thread."""
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def lock(
        self,
        name: str,
        *,
        ttl: float = 10.0,
        mode: Mode = "exclusive",
        wait: float | None = None,
        lock_delay: float = 0.0,
    ) -> Iterator[HeldLock]:
        """Hold a lock for a `with` block; see `LockClient.lock` (same arguments and errors)."""
        held_lock = self._client.lock(name, ttl=ttl, mode=mode, wait=wait, lock_delay=lock_delay)
        held = self._run(held_lock.__aenter__())
        try:
            yield held
        except BaseException as error:
            if not self._run(held_lock.__aexit__(type(error), error, error.__traceback__)):
                raise
        else:
            self._run(held_lock.__aexit__(None, None, None))

    def validate_token(self, name: str, token: int) -> bool:
        """See `LockClient.validate_token`."""
        return self._run(self._client.validate_token(name, token))

    @staticmethod
    async def _connect(target: str) -> LockClient:
        # The channel must be created on the loop that will use it.
        return LockClient.connect(target)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()
