from __future__ import annotations

import contextlib
import json
import math
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kazoo.exceptions import (  # type: ignore[import-untyped]  # kazoo ships no types
    BadVersionError,
    NodeExistsError,
    NoNodeError,
)

from tessera.core import BackendError
from tessera.core.plugins import LockSession
from tessera.lock_backends._queue import LockQueue
from tessera.lock_backends._zookeeper_client import Requests, ZooKeeperConnection, failure
from tessera.lock_backends._zookeeper_layout import (
    CLOCK,
    LOCKS,
    Place,
    lock_name,
    marker_path,
    parse_children,
    session_path,
)
from tessera.lock_backends._zookeeper_session_ends import SessionEnds
from tessera.lock_backends._zookeeper_waits import Children

#: Deadlines remembered before passed ones are forgotten (then twice the number kept).
_DEADLINES_KEPT = 1024


@dataclass(frozen=True, slots=True)
class Departure:
    """A queue entry that left its lock through this process.

    Attributes:
        name: The lock.
        session_id: The entry's session.
        path: The entry's node.
        queue: The lock's children as read right after the entry left, handed to its waiters
            instead of a read of their own; None when not read.

    """

    name: str
    session_id: str
    path: str
    queue: Children | None


class ZooKeeperSessions:
    """Lock sessions as persistent nodes, timed by ZooKeeper's own clock.

    A session lives until `mtime + ttl` of its node, `mtime` being the time ZooKeeper's leader
    stamped on the last renewal (a `set` of the node). Whether it expired is decided against the
    `mtime` of a write to `CLOCK` made after reading the session, never against a service
    host's clock; the first process that finds it expired ends it: one transaction deletes its
    entries, its places and its node (compared on the version it read, so a concurrent renewal
    wins), and leaves a lock-delay marker on each lock it held with a lock-delay. A renewal of a
    session found expired ends it instead.

    Local clocks only decide when to look again: each write's `mtime` keeps an estimate of
    ZooKeeper's clock, and waiters sleep until a deadline by that estimate, then ask ZooKeeper.
    The deadlines waiters sleep until are remembered (`deadlines_ms`): a renewal only moves a
    deadline later, so one seen before is a lower bound, and a waiter woken by a departure need
    not read its blockers' sessions again (with many waiters on a semaphore, those reads were
    most of the work of each hand-off).

    A session found gone, by its end here or by a read, also fails the waits of its own
    waiters here at once (`ends`); those of other processes learn it from their watch.

    Args:
        connection: The backend's ZooKeeper client.
        departed: Called with the entries each session end removed (to wake local waiters).

    Attributes:
        ends: The waits of this process's waiters on their own sessions' ends.

    """

    def __init__(
        self, connection: ZooKeeperConnection, departed: Callable[[list[Departure]], None]
    ) -> None:
        self._zk = connection
        self._departed = departed
        self.ends = SessionEnds(connection)
        self._offset_ms = 0.0
        self._deadlines: dict[str, int] = {}
        self._prune_above = _DEADLINES_KEPT

    async def open(self, ttl_s: float) -> LockSession:
        """Create a session node living `ttl_s` (rounded up to whole seconds)."""
        session_id = secrets.token_hex(8)
        ttl_ms = math.ceil(ttl_s) * 1000
        data = json.dumps({"ttl_ms": ttl_ms}).encode()
        zk = await self._zk.requests()
        _, stat = await zk.create(session_path(session_id), data, makepath=True, include_data=True)
        self.saw_clock(stat.mtime)
        self._saw_deadline(session_id, int(stat.mtime) + ttl_ms)
        return LockSession(session_id, ttl_ms / 1000)

    async def keep_alive(self, session_id: str) -> float:
        """Renew a session; return its TTL in seconds, or 0 when it is gone or was expired."""
        path = session_path(session_id)
        while True:
            try:
                data, stat = await (await self._zk.requests()).get(path)
            except NoNodeError:
                return 0.0
            ttl_ms = _ttl_ms(data)
            try:
                renewed = await (await self._zk.requests()).set(path, data, stat.version)
            except BadVersionError:
                continue  # renewed or ended meanwhile: look again
            except NoNodeError:
                return 0.0
            self.saw_clock(renewed.mtime)
            if renewed.mtime >= stat.mtime + ttl_ms:
                # It had expired before this renewal, which must not revive it.
                await self.end(session_id, renewed.version, expired_at_ms=stat.mtime + ttl_ms)
                return 0.0
            self._saw_deadline(session_id, int(renewed.mtime) + ttl_ms)
            return ttl_ms / 1000

    async def ttl(self, session_id: str) -> float:
        """Return the seconds a session has left (0 when gone), ending it if it expired."""
        left = (await self.left_ms([session_id]))[session_id]
        return 0.0 if left is None else left / 1000

    async def close(self, session_id: str) -> None:
        """End a session voluntarily (no lock-delay); idempotent."""
        await self.end(session_id, -1, expired_at_ms=None)

    async def now_ms(self) -> int:
        """Return ZooKeeper's clock (ms), read as the `mtime` of a write to `CLOCK`."""
        return await self._clock(await self._zk.requests())

    async def deadlines_ms(self, session_ids: Iterable[str]) -> dict[str, int | None]:
        """Return when each session ends at the earliest (ZooKeeper's clock), None when gone.

        A deadline this process saw (a renewal, a read) and that has not passed yet by its
        estimate of ZooKeeper's clock is answered without asking ZooKeeper: renewals only
        move it later, so it is a lower bound, and a session ended by another process since
        then shows as alive until that deadline (its entries went with it in the same
        transaction: the waiters behind them are woken by their departure, and the waiters of
        that session by its node's watch, see `SessionEnds`). The others are read.
        """
        now = self._now_estimate_ms()
        deadlines: dict[str, int | None] = {}
        unknown: list[str] = []
        for session_id in session_ids:
            known = self._deadlines.get(session_id, 0)
            if known > now:
                deadlines[session_id] = known
            else:
                unknown.append(session_id)
        if not unknown:
            return deadlines
        zk = await self._zk.requests()
        reads = {session_id: zk.get(session_path(session_id)) for session_id in unknown}
        for session_id, read in reads.items():
            try:
                data, stat = await read
            except NoNodeError:
                deadlines[session_id] = None
                self._gone(session_id)
            else:
                deadlines[session_id] = int(stat.mtime) + _ttl_ms(data)
                self._saw_deadline(session_id, int(stat.mtime) + _ttl_ms(data))
        return deadlines

    def remembered_ms(self, session_ids: Iterable[str]) -> dict[str, int | None] | None:
        """Return what `deadlines_ms` answers when it need not ask ZooKeeper, else None."""
        now = self._now_estimate_ms()
        deadlines: dict[str, int | None] = {}
        for session_id in session_ids:
            known = self._deadlines.get(session_id, 0)
            if known <= now:
                return None
            deadlines[session_id] = known
        return deadlines

    async def left_ms(self, session_ids: Iterable[str]) -> dict[str, int | None]:
        """Return the ms each session has left (None: gone), ending the expired ones first."""
        wanted = list(dict.fromkeys(session_ids))
        while True:
            zk = await self._zk.requests()
            now = await self._clock(zk)
            reads = {session_id: zk.get(session_path(session_id)) for session_id in wanted}
            left: dict[str, int | None] = {}
            expired: list[tuple[str, int, int]] = []
            for session_id, read in reads.items():
                try:
                    data, stat = await read
                except NoNodeError:
                    left[session_id] = None
                    self._gone(session_id)
                    continue
                # Read after the clock: a renewal since makes mtime pass `now` (left > TTL).
                deadline = int(stat.mtime) + _ttl_ms(data)
                self._saw_deadline(session_id, deadline)
                left[session_id] = min(deadline - now, _ttl_ms(data))
                if deadline <= now:
                    expired.append((session_id, int(stat.version), deadline))
            if not expired:
                return left
            for session_id, version, deadline in expired:
                await self.end(session_id, version, expired_at_ms=deadline)
            # An end that lost to a renewal leaves the session alive: read again.

    def _now_estimate_ms(self) -> float:
        """Return ZooKeeper's clock as estimated from the last write's `mtime`."""
        return time.time() * 1000 + self._offset_ms

    def local_delay_s(self, deadline_ms: int) -> float:
        """Return the seconds from now until ZooKeeper's clock reaches `deadline_ms` (estimate)."""
        return max((deadline_ms - self._offset_ms) / 1000 - time.time(), 0.0)

    def saw_clock(self, mtime_ms: int) -> None:
        """Record ZooKeeper's clock as stamped on a write just answered."""
        self._offset_ms = mtime_ms - time.time() * 1000

    async def end(self, session_id: str, version: int, *, expired_at_ms: int | None) -> bool:
        """Delete a session's entries, places and node in one transaction.

        Args:
            session_id: The session.
            version: The version of its node this decision was made on; -1: any (a close).
            expired_at_ms: When it expired (ZooKeeper's clock), for lock-delays; None for a
                voluntary end.

        Returns:
            True when the session is gone; False when it was renewed meanwhile (an expiry lost).

        """
        path = session_path(session_id)
        while True:
            zk = await self._zk.requests()
            try:
                places = await zk.children(path)
            except NoNodeError:
                self._gone(session_id)
                return True
            queues = {place: zk.children(f"{LOCKS}/{place}") for place in places}
            reads = {place: zk.get(f"{path}/{place}") for place in places}
            deletes: list[str] = []
            markers: list[str] = []
            departures: list[Departure] = []
            for place, queue_read in queues.items():
                name = lock_name(place)
                try:
                    children = await queue_read
                    data, _ = await reads[place]
                except NoNodeError:
                    continue  # left meanwhile; the transaction below notices
                nodes, _ = parse_children(children)
                queue = LockQueue(node.entry for node in nodes)
                for node in nodes:
                    if node.entry.session_id != session_id:
                        continue
                    held = node.entry in queue.holders
                    deletes.append(f"{LOCKS}/{place}/{node.name}")
                    departures.append(Departure(name, session_id, deletes[-1], None))
                    delay_ms = Place.decode(data).lock_delay_ms
                    if held and expired_at_ms is not None and delay_ms > 0:
                        markers.append(marker_path(name, expired_at_ms + delay_ms, session_id))

            def operations(
                tx: Any,
                places: list[str] = places,
                deletes: list[str] = deletes,
                markers: list[str] = markers,
            ) -> None:
                for entry in deletes:
                    tx.delete(entry)
                for place in places:
                    tx.delete(f"{path}/{place}")
                for marker in markers:
                    tx.create(marker)
                tx.delete(path, version)

            failed = failure(await zk.commit(operations))
            if failed is None:
                self._gone(session_id)
                self._departed(departures)
                return True
            index, error = failed
            is_session_delete = index == len(deletes) + len(places) + len(markers)
            if is_session_delete and isinstance(error, BadVersionError):
                return False
            if is_session_delete and isinstance(error, NoNodeError):
                self._gone(session_id)
                return True
            if isinstance(error, NodeExistsError):
                raise BackendError(f"zookeeper: marker exists: {error}", backend="zookeeper")
            # An entry or place changed meanwhile (released, or a new place): look again.

    def _gone(self, session_id: str) -> None:
        """Forget a session found gone, and fail the waits of its waiters here."""
        self._deadlines.pop(session_id, None)
        self.ends.ended(session_id)

    def _saw_deadline(self, session_id: str, deadline_ms: int) -> None:
        """Remember a session's deadline; forget passed ones when many are remembered.

        Sessions ended by other processes are never forgotten otherwise: the pruning keeps the
        memory to about twice the sessions alive, at a cost amortized over the insertions.
        """
        self._deadlines[session_id] = max(deadline_ms, self._deadlines.get(session_id, 0))
        if len(self._deadlines) > self._prune_above:
            now = self._now_estimate_ms()
            self._deadlines = {s: d for s, d in self._deadlines.items() if d > now}
            self._prune_above = max(_DEADLINES_KEPT, 2 * len(self._deadlines))

    async def _clock(self, zk: Requests) -> int:
        while True:
            try:
                stat = await zk.set(CLOCK, b"")
            except NoNodeError:
                with contextlib.suppress(NodeExistsError):
                    await zk.create(CLOCK, makepath=True)
                continue
            self.saw_clock(stat.mtime)
            return int(stat.mtime)


def _ttl_ms(data: bytes) -> int:
    return int(json.loads(data)["ttl_ms"])
