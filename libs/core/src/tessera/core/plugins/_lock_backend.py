from __future__ import annotations

import enum
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable


class LockMode(enum.Enum):
    """How a lock is held: one exclusive holder, any number of shared ones, or N permits.

    `PERMIT` makes the name a semaphore: the first `permits` entries of its FIFO queue hold it
    (one permit each); see `LockBackend.acquire`.
    """

    EXCLUSIVE = "exclusive"
    SHARED = "shared"
    PERMIT = "permit"


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
        value: The value stored with the entry (`acquire(value=...)`, then `proclaim`); an
            election's leader publishes it. b"" when none.

    """

    session_id: str
    mode: LockMode
    token: int
    queue_position: int
    lease_expires_in_s: float | None
    holds: int = 1
    value: bytes = b""


@dataclass(frozen=True, slots=True)
class LockState:
    """Holders and waiters of one lock at one instant.

    Attributes:
        name: The lock.
        holders: Current holders (one exclusive, or one or more shared), by token.
        waiters: Waiters in the order they will be served.
        permits: For a semaphore (entries in mode `PERMIT`), how many permits it has; 0 for a
            lock and for a name nobody holds or awaits.

    """

    name: str
    holders: tuple[LockEntry, ...]
    waiters: tuple[LockEntry, ...]
    permits: int = 0


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
    are in range (names are 1-256 bytes of UTF-8, TTLs 1-3600 s, permits 1-1024, values at most
    64 KiB, `reentrant` False and `lock_delay_s` 0 in mode `PERMIT`).

    Semaphores and elections are built on the same queue, so every backend gets them:

    - A semaphore is a name whose entries are in mode `PERMIT`: the first `permits` entries of
      the FIFO queue hold it, one permit each, every permit leased by its session and fenced by
      its own token (tokens of one name still strictly increase across all its grants).
      `release`, `describe`, `list_locks`, session expiry and `reap` treat permits exactly as
      grants. `tessera.lock_backends.LockQueue` implements the rule (holders and blockers).
    - An election is an exclusive lock: its leader is the holder, its proclaimed value the
      holder's `LockEntry.value` (set by `acquire(value=...)` and `proclaim`); campaigning is
      waiting for the lock, resigning is releasing it, observing is `observe`.

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
        permits: int = 0,
        value: bytes = b"",
    ) -> LockGrant | None:
        """Queue the session for the lock and wait, FIFO, until it holds it.

        A session has at most one place per lock: acquiring again with the same non-empty
        `request_id` (a retry) returns the same grant or keeps waiting in the same place.
        When the wait ends without a grant (timeout, cancellation of the calling task) the
        session leaves the queue.

        Who holds, in queue (token) order: an `EXCLUSIVE` entry when no entry is before it; a
        `SHARED` entry when only shared entries are before it; a `PERMIT` entry when only permit
        entries are before it and fewer than `permits` of them. A waiter sleeps until an entry
        it depends on (`LockQueue.blockers`: its predecessor, the nearest exclusive entry
        before it, or for a permit every entry before it) or its own entry leaves; never polls.

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
            permits: In mode `PERMIT`, the size of the semaphore (1-1024); 0 in the other
                modes. Every permit entry of a name must give the same size.
            value: Stored with the entry from the moment it is queued and shown as
                `LockEntry.value` by `describe`, `list_locks` and `observe`, until `proclaim`
                replaces it or the entry leaves. An election's candidate passes its value here,
                so that a new leader is never seen without one.

        Returns:
            The grant, or None when the lock was not granted within `wait_s` (a lock-delay still
            running counts as not granted).

        Raises:
            NotFoundError: The session does not exist (or ended while waiting).
            FailedPreconditionError: The session already holds or waits for this lock under
                another request id, or in another mode (or waits for it, when `reentrant`);
                or the name is queued in a way this entry cannot join: `PERMIT` entries with
                another `permits`, or `PERMIT` next to `EXCLUSIVE`/`SHARED` entries (the
                session is then not queued).
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

    async def proclaim(self, name: str, session_id: str, token: int, value: bytes) -> bool:
        """Replace the value stored with the grant `token` of `session_id` on lock `name`.

        Observers (`observe`) see the change; the grant, its token and its place are unchanged.

        Returns:
            True when the value was stored; False when the session does not hold that grant (it
            is gone, or the session only waits): nothing changed.

        Raises:
            BackendError: The backend failed; the value may or may not be stored.

        """
        ...

    def observe(self, name: str) -> AsyncGenerator[LockState, None]:
        """Yield the state of lock `name` now, then again after each change of it.

        A change is an entry queued or leaving (released, expired, timed out, cancelled) or a
        value proclaimed. States may be coalesced (several changes, one state), but a state is
        never older than a change that woke the iterator, and consecutive equal states may be
        skipped. Waits without polling. Runs until the caller closes it (`aclose`, or
        cancelling the task); implement it as an async generator.

        Raises:
            BackendError: The backend failed; the caller may observe again.

        """
        ...

    async def reap(self) -> int:
        """Delete state left by dead sessions and expired records, for locks nobody touches.

        Backends that clean up during every operation on a lock still need this for locks no
        operation touches: entries of expired sessions (and their values and hold counts),
        lock-delay records whose delay is over (etcd: guards whose entry is gone get their
        `seen_at` set, and are deleted once the delay passed). Safe to run concurrently with
        anything, from any process; never removes state of a live session.

        Returns:
            How many records it deleted.

        Raises:
            BackendError: The backend failed; what was deleted stays deleted.

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
