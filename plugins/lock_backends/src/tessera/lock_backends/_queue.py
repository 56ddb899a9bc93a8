from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tessera.core.plugins import LockEntry, LockMode


@dataclass(frozen=True, slots=True)
class QueuedEntry:
    """One session's place in a lock's queue, as a backend stores it.

    Attributes:
        session_id: The session.
        mode: The mode it holds or waits for.
        token: Its place in the queue, which is also its fencing token: earlier arrivals have
            smaller tokens.

    """

    session_id: str
    mode: LockMode
    token: int


class LockQueue:
    """The FIFO order of one lock: who holds it and whom each waiter waits for.

    The queue is ordered by token. The head holds the lock; when the head is shared, every shared
    entry before the first exclusive one holds it too (readers share, a writer waits for all
    earlier entries). Pure logic over one consistent snapshot of a backend.

    Args:
        entries: Every entry of the lock, in any order.

    """

    def __init__(self, entries: Iterable[QueuedEntry]) -> None:
        self._entries = tuple(sorted(entries, key=lambda entry: entry.token))
        holders = 0
        for entry in self._entries:
            if entry.mode is LockMode.EXCLUSIVE:
                holders = holders or 1
                break
            holders += 1
        self._holders = holders

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
            earlier = [other for other in earlier if other.mode is LockMode.EXCLUSIVE]
        return earlier[-1] if earlier else None

    def describe(
        self, expires_in_s: dict[str, float | None], holds: dict[str, int] | None = None
    ) -> tuple[tuple[LockEntry, ...], tuple[LockEntry, ...]]:
        """Return holders and waiters as `LockEntry`, with queue positions.

        Args:
            expires_in_s: Seconds until each session's lease ends, by session id.
            holds: Reentrant hold counts of holders, by session id (absent: 1).

        """
        counts = holds or {}
        holders = tuple(
            LockEntry(
                e.session_id,
                e.mode,
                e.token,
                0,
                expires_in_s.get(e.session_id),
                counts.get(e.session_id, 1),
            )
            for e in self.holders
        )
        waiters = tuple(
            LockEntry(e.session_id, e.mode, e.token, position, expires_in_s.get(e.session_id))
            for position, e in enumerate(self.waiters, start=1)
        )
        return holders, waiters
