from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tessera.client._sync_facade import SyncFacade
from tessera.client.lock._client import HeldLock, LockClient, Mode


class SyncLockClient(SyncFacade[LockClient]):
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
        super().__init__(lambda: LockClient.connect(target), thread_name="tessera-lock-client")

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
