from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class LockGrant:
    """Proof that an owner holds a lock.

    Attributes:
        name: The lock's name.
        owner: Who holds it (a session or client id).
        token: Fencing token: strictly greater than the token of every earlier grant of the same
            lock name, so the guarded resource can reject writes from a stale holder.
        ttl_s: How long the grant lasts without a `refresh`, in seconds.

    """

    name: str
    owner: str
    token: int
    ttl_s: float


@runtime_checkable
class LockBackend(Protocol):
    """Stores distributed locks. Entry-point group: `tessera.lock_backends`.

    Factory: the entry point names a class or callable that takes the process's
    `tessera.core.TesseraSettings` as its only argument and returns a backend; the backend connects
    lazily on first use and holds its connections until `close`.

    Concurrency: every method is called concurrently from many tasks of one event loop and from
    other processes; mutual exclusion must hold across all of them. Waiters are served in arrival
    order (fair) where the backend can do so.
    """

    async def acquire(
        self, name: str, owner: str, ttl_s: float, *, wait_s: float | None = None
    ) -> LockGrant | None:
        """Take the lock `name` for `owner`.

        Args:
            name: The lock.
            owner: The would-be holder.
            ttl_s: Lifetime of the grant in seconds, > 0; the lock frees itself after it unless
                refreshed.
            wait_s: How long to wait for the lock; None waits as long as the caller's task runs,
                0 tries once.

        Returns:
            The grant, or None when the lock was not free within `wait_s`.

        Raises:
            ValidationError: `ttl_s` or `wait_s` is out of range, or `name` is unusable.
            BackendError: The backend failed; the lock is not held.

        """
        ...

    async def refresh(self, grant: LockGrant) -> bool:
        """Extend a grant by its `ttl_s` from now.

        Returns:
            True if the grant was still held and is extended; False if it was lost (expired or
            taken over), in which case the holder must stop acting on the guarded resource.

        Raises:
            BackendError: The backend failed; the grant may or may not still be held.

        """
        ...

    async def release(self, grant: LockGrant) -> bool:
        """Give the lock back.

        Returns:
            True if this grant held the lock and released it; False if it was no longer held.

        Raises:
            BackendError: The backend failed; the grant expires after its TTL anyway.

        """
        ...

    async def close(self) -> None:
        """Close the backend's connections; grants still held expire after their TTL."""
        ...
