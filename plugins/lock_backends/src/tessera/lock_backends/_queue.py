from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tessera.core.plugins import LockEntry, LockMode, LockState


@dataclass(frozen=True, slots=True)
class QueuedEntry:
    """One session's place in a lock's queue, as a backend stores it.

    Attributes:
        session_id: The session.
        mode: The mode it holds or waits for.
        token: Its place in the queue, which is also its fencing token: earlier arrivals have
            smaller tokens.
        permits: In mode `PERMIT`, the size of the semaphore; 0 otherwise.

    """

    session_id: str
    mode: LockMode
    token: int
    permits: int = 0


class LockQueue:
    """The FIFO order of one lock: who holds it and whom each waiter waits for.

    The queue is ordered by token. The head holds the lock; when the head is shared, every shared
    entry before the first exclusive one holds it too (readers share, a writer waits for all
    earlier entries); when the head is a permit (a semaphore), the first `permits` permit entries
    hold it. Pure logic over one consistent snapshot of a backend.

    Args:
        entries: Every entry of the lock, in any order.

    """

    def __init__(self, entries: Iterable[QueuedEntry]) -> None:
        self._entries = tuple(sorted(entries, key=lambda entry: entry.token))
        holders = 0
        for entry in self._entries:
            if not self._joins(entry, holders):
                break
            holders += 1
        self._holders = holders

    def _joins(self, entry: QueuedEntry, holders: int) -> bool:
        """Whether `entry` holds when the `holders` entries before it all hold."""
        if entry.mode is LockMode.EXCLUSIVE:
            return holders == 0
        earlier = self._entries[:holders]
        if entry.mode is LockMode.SHARED:
            return all(other.mode is LockMode.SHARED for other in earlier)
        return holders < entry.permits and all(
            other.mode is LockMode.PERMIT and other.permits == entry.permits for other in earlier
        )

    @property
    def permits(self) -> int:
        """The size of the semaphore this queue is (its head's permits); 0 for a lock."""
        return self._entries[0].permits if self._entries else 0

    @property
    def holders(self) -> tuple[QueuedEntry, ...]:
        """Entries holding the lock, by token."""
        return self._entries[: self._holders]

    @property
    def waiters(self) -> tuple[QueuedEntry, ...]:
        """Entries waiting, in the order they will be served."""
        return self._entries[self._holders :]

    def find(self, session_id: str) -> QueuedEntry | None:
        """Return the entry of `session_id`, or None when it is not queued."""
        return next((entry for entry in self._entries if entry.session_id == session_id), None)

    def blocker(self, entry: QueuedEntry) -> QueuedEntry | None:
        """Return the one entry `entry` must see leave before it can hold the lock.

        An exclusive entry waits for its immediate predecessor; a shared one for the nearest
        exclusive entry before it. Each waiter thus wakes once per release that concerns it.

        Returns:
            The entry to wait for, or None when `entry` holds the lock.

        """
        earlier = [other for other in self._entries if other.token < entry.token]
        if entry.mode is LockMode.SHARED:
            earlier = [other for other in earlier if other.mode is not LockMode.SHARED]
        return earlier[-1] if earlier else None

    def blockers(self, entry: QueuedEntry) -> tuple[QueuedEntry, ...]:
        """Return the entries of which one must leave before `entry` can hold the lock.

        An exclusive or shared entry has its one `blocker`; a permit that does not hold waits for
        any earlier entry to leave (each departure moves it one place up).

        Returns:
            The entries to wait for; empty when `entry` holds the lock.

        """
        if entry in self.holders:
            return ()
        if entry.mode is not LockMode.PERMIT:
            blocker = self.blocker(entry)
            return () if blocker is None else (blocker,)
        return tuple(other for other in self._entries if other.token < entry.token)

    def conflict(self, entry: QueuedEntry) -> str | None:
        """Say why `entry` cannot join this queue, or None when it can.

        Permits join only a queue of permits of the same size; locks only a queue of locks.
        Only entries queued before `entry` count (a later one sees `entry` and gives way); an
        entry not queued yet (token 0) is checked against every entry.
        """
        for other in self._entries:
            if other == entry or (entry.token and other.token > entry.token):
                continue
            if (other.mode is LockMode.PERMIT) != (entry.mode is LockMode.PERMIT):
                return "the name is used as a lock and as a semaphore at once"
            if entry.mode is LockMode.PERMIT and other.permits != entry.permits:
                return f"the semaphore has {other.permits} permits, not {entry.permits}"
        return None

    def describe(
        self,
        expires_in_s: dict[str, float | None],
        holds: dict[str, int] | None = None,
        values: dict[str, bytes] | None = None,
    ) -> tuple[tuple[LockEntry, ...], tuple[LockEntry, ...]]:
        """Return holders and waiters as `LockEntry`, with queue positions.

        Args:
            expires_in_s: Seconds until each session's lease ends, by session id.
            holds: Reentrant hold counts of holders, by session id (absent: 1).
            values: Values stored with entries, by session id (absent: b"").

        """
        counts = holds or {}
        stored = values or {}
        holders = tuple(
            LockEntry(
                e.session_id,
                e.mode,
                e.token,
                0,
                expires_in_s.get(e.session_id),
                counts.get(e.session_id, 1),
                stored.get(e.session_id, b""),
            )
            for e in self.holders
        )
        waiters = tuple(
            LockEntry(
                e.session_id,
                e.mode,
                e.token,
                position,
                expires_in_s.get(e.session_id),
                value=stored.get(e.session_id, b""),
            )
            for position, e in enumerate(self.waiters, start=1)
        )
        return holders, waiters

    def state(
        self,
        name: str,
        expires_in_s: dict[str, float | None],
        holds: dict[str, int] | None = None,
        values: dict[str, bytes] | None = None,
    ) -> LockState:
        """Return the queue as the `LockState` of lock `name`; arguments as for `describe`."""
        holders, waiters = self.describe(expires_in_s, holds, values)
        return LockState(name, holders, waiters, self.permits)
