"""Observing one etcd lock queue incrementally, for `EtcdLockBackend.observe`.

`observe` used to describe the whole lock after every watch event: a read of the queue plus one
lease read per entry, so a queue of n candidates cost n + 2 round trips per change. The watch
events carry everything about the queue itself (key, value, revision), so `QueueMirror` keeps
the queue from the first read and applies the events to it; only what events do not carry is
read, and only when it may have changed:

- a lease's end, once per entry when it appears, again for entries that become holders (their
  expiry is the one readers act on), and again once the end last read has passed (the session
  may have been renewed since: until then the end shown is early, never late);
- reentrant hold counts (kept under another prefix), when the holders change.

The reads one state needs are made concurrently: a change costs at most one round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tessera.core.etcd import EtcdClient, EventType, KeyValue, Relist, WatchEvent
from tessera.core.plugins import LockState
from tessera.lock_backends._queue import LockQueue, QueuedEntry

#: Parses a queue key: (key, value, create revision) -> (entry, the value stored with it).
EntryParser = Callable[[bytes, bytes, int], tuple[QueuedEntry, bytes]]
#: Seconds until a session's lease ends; 0 when it is gone.
LeaseTtl = Callable[[str], Awaitable[float]]
#: The lock's reentrant hold counts above 1, by session.
HoldCounts = Callable[[], Awaitable[dict[str, int]]]


@dataclass(slots=True)
class _Known:
    """One queue entry as last seen, with when its lease ends (`time.monotonic()`)."""

    entry: QueuedEntry
    value: bytes
    # -inf: not read yet (or the lease was gone when read): read it for the next state.
    lease_ends: float = -math.inf


class QueueMirror:
    """The queue of one lock, kept from a read and the watch events after it.

    Concurrency: one task (the observing generator).

    Args:
        name: The lock.
        parse: Decodes a queue key into its entry and value.
        lease_ttl: Reads a session's remaining lease.
        hold_counts: Reads the lock's hold counts.

    """

    def __init__(
        self, name: str, parse: EntryParser, lease_ttl: LeaseTtl, hold_counts: HoldCounts
    ) -> None:
        self._name = name
        self._parse = parse
        self._lease_ttl = lease_ttl
        self._hold_counts = hold_counts
        self._known: dict[bytes, _Known] = {}
        self._holders: frozenset[tuple[str, int]] | None = None
        self._holds: dict[str, int] = {}

    def reset(self, items: Iterable[KeyValue]) -> None:
        """Replace the queue with a read of it (the first one, or a watch's `Relist`)."""
        previous = self._known
        self._known = {}
        for item in items:
            entry, value = self._parse(item.key, item.value, item.create_revision)
            before = previous.get(item.key)
            # The same entry (not a new one under the same key) keeps the lease end read.
            lease_ends = -math.inf
            if before is not None and before.entry.token == entry.token:
                lease_ends = before.lease_ends
            self._known[item.key] = _Known(entry, value, lease_ends)

    def apply(self, event: WatchEvent) -> None:
        """Apply one watch event of the queue's prefix."""
        if event.type is EventType.DELETE:
            self._known.pop(event.key, None)
            return
        before = self._known.get(event.key)
        if before is None:
            # A key's creation: its create revision is the event's revision.
            entry, value = self._parse(event.key, event.value, event.revision)
            self._known[event.key] = _Known(entry, value)
        else:
            # A rewrite of a queued entry (a proclaimed value) keeps its create revision.
            entry, value = self._parse(event.key, event.value, before.entry.token)
            self._known[event.key] = _Known(entry, value, before.lease_ends)

    async def state(self) -> LockState:
        """Return the lock's state, reading only the leases and hold counts that need it.

        The reads it needs go to etcd at once, so a state costs one round trip at most.
        """
        queue = LockQueue([known.entry for known in self._known.values()])
        holders = frozenset((entry.session_id, entry.token) for entry in queue.holders)
        new_holders = holders - (self._holders or frozenset())
        now = time.monotonic()
        stale = [
            known
            for known in self._known.values()
            if known.lease_ends <= now or (known.entry.session_id, known.entry.token) in new_holders
        ]
        reads: list[Awaitable[Any]] = [self._lease_ttl(k.entry.session_id) for k in stale]
        if holders != self._holders:
            reads.append(self._hold_counts())
        answers = await asyncio.gather(*reads)
        # The hold counts, when read, come after the leases: zip stops before them.
        for known, ttl in zip(stale, answers, strict=False):
            known.lease_ends = now + ttl if ttl > 0 else -math.inf
        if holders != self._holders:
            self._holds, self._holders = answers[-1], holders
        expires: dict[str, float | None] = {}
        for known in self._known.values():
            left = known.lease_ends - now
            expires[known.entry.session_id] = left if left > 0 else None
        values = {known.entry.session_id: known.value for known in self._known.values()}
        return queue.state(self._name, expires, self._holds, values)


async def observe_queue(
    etcd: EtcdClient, prefix: str, mirror: QueueMirror
) -> AsyncGenerator[LockState, None]:
    """Yield the state of the queue under `prefix` now, then after each watch event of it.

    One read, then one watch from the revision after it (`EtcdClient.watch_prefix`: resumed
    after breaks, relisted after compaction).

    Raises:
        BackendError: etcd failed; the caller may observe again.

    """
    read = await etcd.get_prefix(prefix)
    mirror.reset(read.items)
    yield await mirror.state()
    changes = etcd.watch_prefix(prefix, start_revision=read.revision + 1)
    async with contextlib.aclosing(changes):
        async for change in changes:
            if isinstance(change, Relist):
                mirror.reset(change.snapshot.items)
            else:
                mirror.apply(change)
            yield await mirror.state()
