from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable


class LockMode(enum.Enum):
    """How a lock is held: one exclusive holder, or any number of shared ones."""

    EXCLUSIVE = "exclusive"
    SHARED = "shared"


class Safety(enum.Enum):
    """What a backend guarantees about mutual exclusion, stated honestly.

    - `LINEARIZABLE`: mutual exclusion and token order hold through member failures (etcd,
      ZooKeeper).
    - `SINGLE_PRIMARY`: they hold while the one primary lives; a fail-over may break them
      (PostgreSQL with asynchronous replicas).
    - `EFFICIENCY_ONLY`: they hold only without failures; use it to avoid duplicate work, never
      for correctness (Redis).
    """

    LINEARIZABLE = "linearizable"
    SINGLE_PRIMARY = "single-primary"
    EFFICIENCY_ONLY = "efficiency-only"


@dataclass(frozen=True, slots=True)
class LockSession:
    """A lease that holds locks: when it expires or closes, its locks and waits end.

    Attributes:
        id: Opaque session id, unique per backend.
        ttl_s: The TTL the backend granted, in seconds (>= the one requested).

    """

    id: str
    ttl_s: float


@dataclass(frozen=True, slots=True)
class LockGrant:
    """Proof that a session holds a lock.

    Attributes:
        name: The lock's name.
        session_id: The session holding it.
        mode: Exclusive or shared.
        token: Fencing token: strictly greater than the token of every earlier grant of the same
            lock name, so the guarded resource can reject writes from a stale holder.
        holds: How many times the session holds the grant (reentrant acquisitions); each
            release gives one back, the last one releases the lock.

    """

    name: str
    session_id: str
    mode: LockMode
    token: int
    holds: int = 1


@dataclass(frozen=True, slots=True)
class LockEntry:
    """One session holding or waiting for a lock.

    Attributes:
        session_id: The session.
        mode: The mode it holds or waits for.
        token: Its (future) fencing token; also its place in the FIFO queue.
        queue_position: 0 for holders, 1 for the first waiter, and so on.
        lease_expires_in_s: Seconds until the session ends unless renewed; None if unknown.
        holds: Reentrant hold count of a holder (1 for waiters and plain holders).

    """

    session_id: str
    mode: LockMode
    token: int
    queue_position: int
    lease_expires_in_s: float | None
    holds: int = 1


@dataclass(frozen=True, slots=True)
class LockState:
    """Holders and waiters of one lock at one instant.

    Attributes:
        name: The lock.
        holders: Current holders (one exclusive, or one or more shared), by token.
        waiters: Waiters in the order they will be served.

    """

    name: str
    holders: tuple[LockEntry, ...]
    waiters: tuple[LockEntry, ...]


class ReleaseOutcome(enum.Enum):
    """What `LockBackend.release` did."""

    RELEASED = "released"
    """The grant was held and is released now."""
    DECREMENTED = "decremented"
    """One of several reentrant holds was given back; the session still holds the grant."""
    ALREADY_GONE = "already-gone"
    """The grant was released before, or expired with its session: nothing to do."""
    NOT_HOLDER = "not-holder"
    """The session waits for the lock, or the token is another session's grant: nothing done."""


@runtime_checkable
class LockBackend(Protocol):
    """Stores sessions and fair, fenced locks. Entry-point group: `tessera.lock_backends`.

    Factory: the entry point names a class or callable that takes the process's
    `tessera.core.TesseraSettings` as its only argument and returns a backend; the backend connects
    lazily on first use and holds its connections until `close`.

    Concurrency: every method is called concurrently from many tasks of one event loop and from
    other processes (service replicas); mutual exclusion, FIFO order and token order must hold
    across all of them, as far as `safety` says. Waiting never polls: a waiter sleeps until the
    backend notifies it.

    Validation of names, TTLs and timeouts is the service's job; a backend may assume its inputs
    are in range (names are 1-256 bytes of UTF-8, TTLs 1-3600 s).

    Attributes:
        safety: What the backend guarantees (class attribute).

    """

    safety: ClassVar[Safety]

    async def open_session(self, ttl_s: float) -> LockSession:
        """Start a session that lives `ttl_s` seconds (rounded up) unless kept alive.

        Raises:
            BackendError: The backend failed; no session exists.

        """
        ...

    async def keep_alive(self, session_id: str) -> float:
        """Renew a session.

        Returns:
            The TTL the session has again, in seconds, counted from some instant after the call
            started; 0 when the session is gone (expired, closed or unknown).

        Raises:
            BackendError: The backend failed; the session may still live.

        """
        ...

    async def session_ttl(self, session_id: str) -> float:
        """Return the seconds a session has left, without renewing it; 0 when it is gone.

        Raises:
            BackendError: The backend failed.

        """
        ...

    async def close_session(self, session_id: str) -> None:
        """End a session, releasing its locks and abandoning its waits; idempotent.

        Raises:
            BackendError: The backend failed; the session ends after its TTL anyway.

        """
        ...

    async def acquire(
        self,
        name: str,
        session_id: str,
        mode: LockMode,
        *,
        wait_s: float,
        request_id: str = "",
        lock_delay_s: float = 0.0,
        reentrant: bool = False,
    ) -> LockGrant | None:
        """Queue the session for the lock and wait, FIFO, until it holds it.

        A session has at most one place per lock: acquiring again with the same non-empty
        `request_id` (a retry) returns the same grant or keeps waiting in the same place.
        When the wait ends without a grant (timeout, cancellation of the calling task) the
        session leaves the queue.

        Args:
            name: The lock.
            session_id: The would-be holder.
            mode: Exclusive or shared.
            wait_s: Seconds to wait; 0 tries once without queueing.
            request_id: Caller's id making retries idempotent; "" for none.
            lock_delay_s: Lock-delay of this grant (0-60 s): if the grant ends involuntarily
                (its session expires instead of releasing or closing), the lock is granted to
                nobody until at least this many seconds after the backend noticed the expiry,
                so that a holder that was paused past its lease has time to stop. A retry must
                pass the same value.
            reentrant: When the session already holds the lock in `mode`, add one hold to its
                grant (same token) instead of failing; a retry of the latest such acquisition
                (same non-empty `request_id`) adds nothing.

        Returns:
            The grant, or None when the lock was not granted within `wait_s` (a lock-delay still
            running counts as not granted).

        Raises:
            NotFoundError: The session does not exist (or ended while waiting).
            FailedPreconditionError: The session already holds or waits for this lock under
                another request id, or in another mode (or waits for it, when `reentrant`).
            BackendError: The backend failed; the session is not queued, or leaves the queue
                with its lease.

        """
        ...

    async def release(self, name: str, session_id: str, token: int) -> ReleaseOutcome:
        """Give back one hold of the grant `token` of `session_id` on lock `name`.

        The grant is released with its last hold (`RELEASED`); before that the call answers
        `DECREMENTED`. Not idempotent while several holds remain.

        Raises:
            BackendError: The backend failed; the grant ends with its session anyway.

        """
        ...

    async def describe(self, name: str) -> LockState:
        """Return the holders and waiters of one lock (empty tuples when nobody holds it).

        Raises:
            BackendError: The backend failed.

        """
        ...

    async def list_locks(self, prefix: str) -> list[LockState]:
        """Return every held or awaited lock whose name starts with `prefix`, by name.

        Raises:
            BackendError: The backend failed.

        """
        ...

    async def close(self) -> None:
        """Close the backend's connections; sessions expire after their TTL."""
        ...
