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
    queue: list[str] | None


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

    Args:
        connection: The backend's ZooKeeper client.
        departed: Called with the entries each session end removed (to wake local waiters).

    """

    def __init__(
        self, connection: ZooKeeperConnection, departed: Callable[[list[Departure]], None]
    ) -> None:
        self._zk = connection
        self._departed = departed
        self._offset_ms = 0.0

    async def open(self, ttl_s: float) -> LockSession:
        """Create a session node living `ttl_s` (rounded up to whole seconds)."""
        session_id = secrets.token_hex(8)
        ttl_ms = math.ceil(ttl_s) * 1000
        data = json.dumps({"ttl_ms": ttl_ms}).encode()
        zk = await self._zk.requests()
        _, stat = await zk.create(session_path(session_id), data, makepath=True, include_data=True)
        self.saw_clock(stat.mtime)
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
        """Return when each session ends unless renewed (ZooKeeper's clock), None when gone."""
        zk = await self._zk.requests()
        reads = {session_id: zk.get(session_path(session_id)) for session_id in session_ids}
        deadlines: dict[str, int | None] = {}
        for session_id, read in reads.items():
            try:
                data, stat = await read
            except NoNodeError:
                deadlines[session_id] = None
            else:
                deadlines[session_id] = int(stat.mtime) + _ttl_ms(data)
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
                    continue
                # Read after the clock: a renewal since makes mtime pass `now` (left > TTL).
                deadline = int(stat.mtime) + _ttl_ms(data)
                left[session_id] = min(deadline - now, _ttl_ms(data))
                if deadline <= now:
                    expired.append((session_id, int(stat.version), deadline))
            if not expired:
                return left
            for session_id, version, deadline in expired:
                await self.end(session_id, version, expired_at_ms=deadline)
            # An end that lost to a renewal leaves the session alive: read again.

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
                self._departed(departures)
                return True
            index, error = failed
            is_session_delete = index == len(deletes) + len(places) + len(markers)
            if is_session_delete and isinstance(error, BadVersionError):
                return False
            if is_session_delete and isinstance(error, NoNodeError):
                return True
            if isinstance(error, NodeExistsError):
                raise BackendError(f"zookeeper: marker exists: {error}", backend="zookeeper")
            # An entry or place changed meanwhile (released, or a new place): look again.

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
