from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from kazoo.exceptions import (  # type: ignore[import-untyped]  # kazoo ships no types
    BadVersionError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
)

from tessera.core import BackendError, FailedPreconditionError, NotFoundError, TesseraSettings
from tessera.core.plugins import (
    LockGrant,
    LockMode,
    LockSession,
    LockState,
    ReleaseOutcome,
    Safety,
)
from tessera.lock_backends._queue import LockQueue, QueuedEntry
from tessera.lock_backends._zookeeper_client import ZooKeeperConnection, failure
from tessera.lock_backends._zookeeper_layout import (
    LOCKS,
    SESSIONS,
    Place,
    QueueNode,
    entry_prefix,
    is_session_id,
    lock_name,
    lock_path,
    node_name,
    parse_children,
    place_path,
    session_path,
)
from tessera.lock_backends._zookeeper_sessions import Departure, ZooKeeperSessions
from tessera.lock_backends._zookeeper_waits import (
    Children,
    Departures,
    Handover,
    children_of,
    read_children,
)

# A waiter asks ZooKeeper whether a session expired this long after its estimated deadline.
_EXPIRY_SLACK_S = 0.05


class ZooKeeperSettings(TesseraSettings):
    """Where the ZooKeeper lock backend connects (`TESSERA_ZOOKEEPER_HOSTS`)."""

    zookeeper_hosts: str = "127.0.0.1:2181"
    """kazoo connection string: `host:port[,host:port...]`."""


@dataclass(frozen=True, slots=True)
class _Grant:
    """A grant this process handed out, remembered so that its release is one transaction."""

    token: int
    path: str
    place_version: int


@dataclass(frozen=True, slots=True)
class _Enqueued:
    """The outcome of queueing: the entry's token and place, and the queue right after."""

    token: int
    place_version: int
    children: Children
    existing: Place | None


class ZooKeeperLockBackend:
    """Locks in ZooKeeper: the Curator/kazoo recipe on sequential nodes, fair, fenced, leased.

    Acquiring creates, in one transaction, the session's place node on the lock (unique per
    session and lock; its czxid is the fencing token) and a sequential entry under the lock
    (see `_zookeeper_layout`); the transaction also checks that the session exists, and the
    queue is read in the same round trip. The entries' sequence orders the queue, in the same
    order as the tokens. A waiter sets a watch on the entries it waits for (`LockQueue.blockers`;
    a permit behind a full semaphore: its holders) and sleeps until one leaves, or until the
    lease of one of their sessions (or of its own) should have ended; no polling. Its own
    session's end, by whichever process, fails its wait at once (`SessionEnds`: one watch on
    the session's node per process, shared by the session's waiters there). Releasing
    deletes the entry and the place in one transaction; when a waiter of this process waits for
    that entry, the release reads the queue in the same round trip and hands it over
    (`Departures`), so the next holder needs neither the watch event nor a read of its own; an
    entry that another process removed costs one read per process, whatever the number of its
    waiters here, and the leases waiters sleep on are remembered (`ZooKeeperSessions`). Waiting
    never blocks the event loop: requests go through kazoo's asynchronous calls
    (`ZooKeeperConnection`).

    Sessions are not ZooKeeper sessions (one per lock session would cost a connection and a
    heartbeat each): every node is persistent, and a lock session is a node that lives until its
    last renewal's `mtime` plus its TTL by ZooKeeper's clock (`ZooKeeperSessions`); the first
    process that finds it expired deletes it with all its entries. The TTL therefore means what
    it means on etcd: the lease never ends before TTL after the renewal request was answered by
    ZooKeeper, whichever service replica serves the session. A crash of a lock service process
    changes nothing in ZooKeeper: its sessions live on (another replica can renew them) or
    expire after their TTL, and the next contender (or `reap`) frees their locks, after their
    lock-delay. What ZooKeeper's own session of a process means: nothing but its connection.

    Safety: linearizable. ZooKeeper orders every write through its leader (Zab); the tokens are
    zxids, which only grow, across restarts and leader changes. Expiry decisions compare two
    `mtime`s stamped by the leader, so they assume that the ensemble members' clocks agree (as
    NTP keeps them) when the leader changes within a TTL.

    Lock-delay: a holder found expired leaves a marker `d-<expiry + delay>` on its lock, written
    in the transaction that removes it; nobody is granted the lock before that time (ZooKeeper's
    clock).

    Concurrency: any number of tasks of one event loop; any number of processes and service
    replicas on the same ZooKeeper ensemble.

    Args:
        settings: The process settings; `zookeeper_hosts` is read from them when they are
            `ZooKeeperSettings`, else from the environment.
        hosts: Overrides the connection string.

    """

    safety: ClassVar[Safety] = Safety.LINEARIZABLE

    def __init__(self, settings: TesseraSettings, *, hosts: str | None = None) -> None:
        if hosts is None:
            source = settings if isinstance(settings, ZooKeeperSettings) else None
            hosts = (source or ZooKeeperSettings.from_env()).zookeeper_hosts
        self._zk = ZooKeeperConnection(hosts, self._reconnected)
        self._departures = Departures(self._zk)
        self._sessions = ZooKeeperSessions(self._zk, self._departed)
        self._grants: dict[tuple[str, str], _Grant] = {}

    async def open_session(self, ttl_s: float) -> LockSession:
        """Create a session node; see `LockBackend.open_session`."""
        return await self._sessions.open(ttl_s)

    async def keep_alive(self, session_id: str) -> float:
        """Renew the session node; see `LockBackend.keep_alive`."""
        return await self._sessions.keep_alive(session_id) if is_session_id(session_id) else 0.0

    async def session_ttl(self, session_id: str) -> float:
        """Read the session's time left by ZooKeeper's clock; see `LockBackend.session_ttl`."""
        return await self._sessions.ttl(session_id) if is_session_id(session_id) else 0.0

    async def close_session(self, session_id: str) -> None:
        """Delete the session with its entries; see `LockBackend.close_session`."""
        if is_session_id(session_id):
            await self._sessions.close(session_id)

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
        """Queue a sequential entry and wait for its blockers to go; see `LockBackend.acquire`."""
        if not is_session_id(session_id):
            raise NotFoundError(f"session {session_id!r} does not exist")
        place = Place(mode.value, request_id, round(lock_delay_s * 1000), permits)
        while True:
            queued = await self._enqueue(name, session_id, mode, place, value)
            existing = queued.existing
            if existing is None:
                break
            if request_id and existing.reentry == request_id:
                return LockGrant(name, session_id, mode, queued.token, existing.holds)
            if request_id and replace(existing, holds=1, reentry="") == place:
                break  # a retry of the acquisition that queued it: wait in the same place
            if not reentrant or existing.mode != mode.value:
                raise FailedPreconditionError(
                    "the session already holds or waits for this lock; release it first"
                )
            mine = _find(queued.children.names, session_id)
            queue = LockQueue(node.entry for node in parse_children(queued.children.names)[0])
            if mine is None or mine.entry not in queue.holders:
                raise FailedPreconditionError("the session waits for this lock: it cannot reenter")
            more = replace(existing, holds=existing.holds + 1, reentry=request_id)
            path = place_path(session_id, name)
            with contextlib.suppress(BadVersionError, NoNodeError):
                await self._set(path, more.encode(), queued.place_version)
                return LockGrant(name, session_id, mode, queued.token, more.holds)
            # A concurrent release or reentry of the same session changed the grant: again.
        return await self._wait_turn(name, session_id, mode, queued, wait_s)

    async def release(self, name: str, session_id: str, token: int) -> ReleaseOutcome:
        """Delete the holder's entry and place; see `LockBackend.release`.

        A grant held more than once loses one hold instead. A grant this process handed out is
        released in one transaction.
        """
        grant = self._grants.get((name, session_id))
        if (
            grant is not None
            and grant.token == token
            and await self._delete_entry(name, session_id, grant.path, grant.place_version)
        ):
            return ReleaseOutcome.RELEASED
        while True:
            outcome = await self._release_read(name, session_id, token)
            if outcome is not None:
                return outcome

    async def proclaim(self, name: str, session_id: str, token: int, value: bytes) -> bool:
        """Replace the value of a held grant; see `LockBackend.proclaim`."""
        while True:
            place, (czxid, version), children = await self._read_place(name, session_id)
            mine = _find(children, session_id)
            queue = LockQueue(node.entry for node in parse_children(children)[0])
            if place is None or czxid != token or mine is None or mine.entry not in queue.holders:
                return False
            entry = f"{lock_path(name)}/{mine.name}"

            def operations(tx: Any, entry: str = entry, place_version: int = version) -> None:
                tx.check(place_path(session_id, name), place_version)
                tx.set_data(entry, value)
                tx.set_data(lock_path(name), b"")  # tells observers watching the lock node

            zk = await self._zk.requests()
            if failure(await zk.commit(operations)) is None:
                return True

    async def observe(self, name: str) -> AsyncGenerator[LockState, None]:
        """Yield the lock's state now and after each change; see `LockBackend.observe`.

        Watches the lock node (a proclaimed value rewrites it) and its children (entries
        queued or leaving), and looks again when the earliest lease of the queue should have
        ended: an expired entry leaves only when someone notices.
        """
        zk = await self._zk.requests()
        path = lock_path(name)
        previous: LockState | None = None
        while True:
            changed = asyncio.Event()
            watch = zk.watcher(changed.set)
            exists = zk.exists(path, watch)
            listed = zk.children(path, watch)
            await exists
            with contextlib.suppress(NoNodeError):  # the exists watch sees it created
                await listed
            state = await self.describe(name)
            if state != previous:
                yield state
                previous = state
            leases = [e.lease_expires_in_s or 0.0 for e in state.holders + state.waiters]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(leases) + _EXPIRY_SLACK_S if leases else None):
                    await changed.wait()

    async def reap(self) -> int:
        """End expired sessions, delete lock-delays that are over and empty lock nodes.

        Sessions are ended by whoever first finds them expired; this finds the ones nobody
        looks at. See `LockBackend.reap`.

        Returns:
            How many sessions, lock-delay markers and lock nodes it deleted.

        """
        zk = await self._zk.requests()
        deleted = 0
        try:
            sessions = await zk.children(SESSIONS)
        except NoNodeError:
            sessions = []
        if sessions:
            before = len(sessions)
            left = await self._sessions.left_ms(sessions)
            deleted += before - sum(1 for ms in left.values() if ms is not None)
        try:
            locks = await zk.children(LOCKS)
        except NoNodeError:
            locks = []
        now = await self._sessions.now_ms()
        for node in locks:
            path = f"{LOCKS}/{node}"
            try:
                children = await zk.children(path)
            except NoNodeError:
                continue
            _, markers = parse_children(children)
            over = [marker for marker in markers if marker.until_ms <= now]
            for marker in over:
                with contextlib.suppress(NoNodeError):
                    await zk.delete(f"{path}/{marker.name}")
                    deleted += 1
            if len(over) == len(children):
                # Empty: a lock nobody uses. An acquirer racing this recreates it.
                with contextlib.suppress(NoNodeError, NotEmptyError):
                    await zk.delete(path)
                    deleted += 1
        return deleted

    async def describe(self, name: str) -> LockState:
        """Read the queue, its sessions' leases, places and values; see `LockBackend.describe`.

        Sessions found expired are ended first.
        """
        zk = await self._zk.requests()
        while True:
            try:
                children = await zk.children(lock_path(name))
            except NoNodeError:
                return LockState(name, (), ())
            nodes, _ = parse_children(children)
            sessions = {node.entry.session_id for node in nodes}
            left = await self._sessions.left_ms(sessions)
            places = {node.name: zk.get(place_path(node.entry.session_id, name)) for node in nodes}
            values = {node.name: zk.get(f"{lock_path(name)}/{node.name}") for node in nodes}
            entries: list[QueuedEntry] = []
            holds: dict[str, int] = {}
            stored: dict[str, bytes] = {}
            gone = False
            for node in nodes:
                try:
                    data, stat = await places[node.name]
                    value, _ = await values[node.name]
                except NoNodeError:
                    gone = True  # left between the reads
                    continue
                entries.append(replace(node.entry, token=int(stat.czxid)))
                holds[node.entry.session_id] = Place.decode(data).holds
                stored[node.entry.session_id] = value
            orphans = [n.name for n in nodes if left.get(n.entry.session_id) is None]
            if gone or orphans:
                await self._drop_children(name, orphans)
                continue  # the queue changed while it was read: read it again
            expires: dict[str, float | None] = {
                session: ms / 1000 for session, ms in left.items() if ms is not None
            }
            return LockQueue(entries).state(name, expires, holds, stored)

    async def list_locks(self, prefix: str) -> list[LockState]:
        """Describe every lock whose name starts with `prefix`; see `LockBackend.list_locks`."""
        try:
            nodes = await (await self._zk.requests()).children(LOCKS)
        except NoNodeError:
            return []
        start = node_name(prefix)
        names = sorted(lock_name(node) for node in nodes if node.startswith(start))
        states = [await self.describe(name) for name in names]
        return [state for state in states if state.holders or state.waiters]

    async def close(self) -> None:
        """Close the ZooKeeper client; sessions expire after their TTL."""
        await self._zk.close()

    async def _enqueue(
        self, name: str, session_id: str, mode: LockMode, place: Place, value: bytes
    ) -> _Enqueued:
        """Create the session's place and entry, reading the queue in the same round trip."""
        zk = await self._zk.requests()
        session, mine = session_path(session_id), place_path(session_id, name)
        data = place.encode()

        def operations(tx: Any) -> None:
            tx.check(session, -1)
            tx.create(mine, data)
            tx.create(entry_prefix(name, session_id, mode, place.permits), value, sequence=True)
            tx.set_data(mine, data)  # answers the place's stat: its czxid is the token

        while True:
            committed = zk.commit(operations)
            listed = zk.children(lock_path(name), include_data=True)
            results = await committed
            children = await children_of(listed)
            failed = failure(results)
            if failed is None:
                stat = results[3]
                self._sessions.saw_clock(stat.mtime)
                return _Enqueued(int(stat.czxid), int(stat.version), children, None)
            index, error = failed
            if index == 0 and isinstance(error, NoNodeError):
                raise NotFoundError(f"session {session_id!r} does not exist")
            if index == 2 and isinstance(error, NoNodeError):
                with contextlib.suppress(NodeExistsError):  # the lock's first entry
                    await zk.create(lock_path(name), makepath=True)
                continue
            if index == 1 and isinstance(error, NodeExistsError):
                try:
                    found, stat = await zk.get(mine)
                except NoNodeError:
                    continue  # it left meanwhile
                if _find(children.names, session_id) is None:
                    children = await read_children(zk, lock_path(name))
                return _Enqueued(int(stat.czxid), int(stat.version), children, Place.decode(found))
            raise BackendError(f"zookeeper: cannot queue: {error!r}", backend="zookeeper")

    async def _wait_turn(
        self, name: str, session_id: str, mode: LockMode, queued: _Enqueued, wait_s: float
    ) -> LockGrant | None:
        """Wait until the queued entry holds the lock; leave the queue when it does not."""
        node = _find(queued.children.names, session_id)
        if node is None:
            raise NotFoundError(f"session {session_id!r} ended while acquiring")
        path = f"{lock_path(name)}/{node.name}"
        if queued.existing is None:
            nodes = parse_children(queued.children.names)[0]
            earlier = [n.entry for n in nodes if n.entry.token < node.entry.token]
            conflict = LockQueue([*earlier, node.entry]).conflict(node.entry)
            if conflict is not None:
                await self._delete_entry(name, session_id, path, queued.place_version)
                raise FailedPreconditionError(conflict)
        granted = False
        try:
            if wait_s <= 0:
                granted = await self._turn(name, node.entry, queued.children, wait=False)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        granted = await self._turn(name, node.entry, queued.children, wait=True)
        finally:
            if not granted:
                # Leave the queue on timeout, cancellation or failure (this entry only).
                await asyncio.shield(self._leave(name, session_id, path))
        if not granted:
            return None
        if queued.existing is None:
            self._grants[name, session_id] = _Grant(queued.token, path, queued.place_version)
        return LockGrant(name, session_id, mode, queued.token)

    async def _turn(self, name: str, mine: QueuedEntry, children: Children, *, wait: bool) -> bool:
        """Return whether `mine` holds the lock, waiting for it if `wait`.

        Raises:
            NotFoundError: The session ended (its entry is gone).

        """
        while True:
            (nodes, markers), queue = children.parsed, children.queue
            if queue.find(mine.session_id) != mine:
                raise NotFoundError(f"session {mine.session_id!r} ended while waiting")
            blockers = _awaited(queue, mine)
            if not blockers:
                if not markers:
                    return True
                now = await self._sessions.now_ms()
                left_ms = max(marker.until_ms for marker in markers) - now
                if left_ms <= 0:
                    await self._drop_children(name, [m.name for m in markers])
                    return True
                if not wait:
                    return False
                await self._sleep(mine.session_id, left_ms / 1000)
            else:
                sessions = {b.session_id for b in blockers}
                if not wait:
                    left = await self._sessions.left_ms(sessions)
                    if all(ms is not None for ms in left.values()):
                        return False
                    # A blocker's session had expired and was ended (or its entry was an
                    # orphan, dropped now): look again.
                    orphans = [
                        node.name
                        for node in nodes
                        if node.entry in blockers and left.get(node.entry.session_id) is None
                    ]
                    await self._drop_children(name, orphans)
                else:
                    after = await self._wait_departure(name, mine, blockers, children)
                    if after is not None:
                        children = after  # read once for every waiter, see `Departures`
                        continue
            # Empty when the lock was emptied (and reaped): our entry is gone too.
            children = await read_children(await self._zk.requests(), lock_path(name))
            self._departures.seen(lock_path(name), children)

    async def _wait_departure(
        self,
        name: str,
        mine: QueuedEntry,
        blockers: tuple[QueuedEntry, ...],
        children: Children,
    ) -> Children | None:
        """Sleep until a blocker leaves, or a blocker's or our own lease should have ended.

        Raises `NotFoundError` as soon as our own session ended (see `_sleep`).

        Args:
            name: The lock.
            mine: The waiting entry.
            blockers: The entries it waits for.
            children: The read the blockers were found in.

        Returns:
            The lock's children as read after a blocker left (see `Departures`); None when
            the queue must be read again.

        """
        names = children.node_names
        lock = lock_path(name)
        paths = tuple(f"{lock}/{names[blocker]}" for blocker in blockers)
        sessions = {blocker.session_id for blocker in blockers} | {mine.session_id}
        awaited = tuple(names[blocker] for blocker in blockers)
        remembered = self._sessions.remembered_ms(sessions)
        watched: Handover | BaseException
        read: dict[str, int | None] | BaseException
        if remembered is not None:
            # Every lease is known (the common case on a busy lock): no task to gather.
            watched, read = await self._departures.wait_for(lock, awaited, children), remembered
        else:
            # The watches and the leases are asked for in one round trip.
            watched, read = await asyncio.gather(
                self._departures.wait_for(lock, awaited, children),
                self._sessions.deadlines_ms(sessions),
                return_exceptions=True,
            )
        if isinstance(watched, BaseException):
            raise watched
        departed = watched
        try:
            if isinstance(read, BaseException):
                raise read
            ends = read
            gone = {session for session, deadline in ends.items() if deadline is None}
            if gone:
                # A session ended: its entries are gone (or orphaned: then they go now).
                orphans = [names[b] for b in blockers if b.session_id in gone]
                await self._drop_children(name, orphans)
                return None
            earliest = min(deadline for deadline in ends.values() if deadline is not None)
            timeout = self._sessions.local_delay_s(earliest) + _EXPIRY_SLACK_S
            await self._sleep(mine.session_id, timeout, departed)
            if departed.done():
                return departed.result()
            await self._sessions.left_ms(
                session for session, end in ends.items() if end is not None and end <= earliest
            )
            return None
        finally:
            self._departures.forget(departed, paths)

    async def _sleep(self, session_id: str, seconds: float, woken: Handover | None = None) -> None:
        """Sleep `seconds`, or until `woken` is done; raise at once if the session ends.

        Raises:
            NotFoundError: The waiting session ended (see `SessionEnds`).
            BackendError: Its end could not be watched.

        """
        if woken is not None and woken.done():
            return  # no need to watch the session
        ending = await self._sessions.ends.watch(session_id)
        try:
            wakes = (ending,) if woken is None else (ending, woken)
            await asyncio.wait(wakes, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
            if ending.done():
                ending.result()  # raises: it never succeeds
        finally:
            self._sessions.ends.forget(session_id, ending)

    async def _release_read(self, name: str, session_id: str, token: int) -> ReleaseOutcome | None:
        """Release after reading the place and the queue; None when they changed meanwhile."""
        place, (czxid, version), children = await self._read_place(name, session_id)
        nodes, _ = parse_children(children)
        mine = _find(children, session_id)
        if place is not None and czxid == token and mine is not None:
            queue = LockQueue(node.entry for node in nodes)
            if mine.entry not in queue.holders:
                return ReleaseOutcome.NOT_HOLDER  # still waiting: cancel the Acquire instead
            if place.holds > 1:
                less = replace(place, holds=place.holds - 1)
                try:
                    await self._set(place_path(session_id, name), less.encode(), version)
                except (BadVersionError, NoNodeError):
                    return None
                return ReleaseOutcome.DECREMENTED
            path = f"{lock_path(name)}/{mine.name}"
            if not await self._delete_entry(name, session_id, path, version):
                return None
            return ReleaseOutcome.RELEASED
        if await self._token_queued(name, token, [n for n in nodes if n is not mine]):
            return ReleaseOutcome.NOT_HOLDER  # another session's grant
        return ReleaseOutcome.ALREADY_GONE

    async def _read_place(
        self, name: str, session_id: str
    ) -> tuple[Place | None, tuple[int, int], list[str]]:
        """Read a session's place on a lock and the lock's queue, in one round trip.

        Returns:
            The place (None when absent), its (czxid, version), and the queue's children.

        """
        zk = await self._zk.requests()
        place_read = zk.get(place_path(session_id, name))
        listed = zk.children(lock_path(name))
        try:
            data, stat = await place_read
            place, identity = Place.decode(data), (int(stat.czxid), int(stat.version))
        except NoNodeError:
            place, identity = None, (0, -1)
        try:
            children = await listed
        except NoNodeError:
            children = []
        return place, identity, children

    async def _token_queued(self, name: str, token: int, nodes: list[QueueNode]) -> bool:
        """Whether one of `nodes` (entries of lock `name`) has the fencing token `token`."""
        zk = await self._zk.requests()
        reads = [zk.exists(place_path(node.entry.session_id, name)) for node in nodes]
        stats = [await read for read in reads]
        return any(stat is not None and stat.czxid == token for stat in stats)

    async def _delete_entry(self, name: str, session_id: str, path: str, version: int) -> bool:
        """Delete an entry and its place (at `version`) in one transaction; False if changed.

        When a waiter of this process waits for the entry, the queue is read right after, in
        the same round trip, and handed to it, so that the next holder knows at once, without a
        watch event and a read of its own.
        """
        place = place_path(session_id, name)

        def operations(tx: Any) -> None:
            tx.check(place, version)
            tx.delete(path)
            tx.delete(place)

        zk = await self._zk.requests()
        self._grants.pop((name, session_id), None)
        self._departures.leaving(path)
        deleted, children = False, None
        try:
            committed = zk.commit(operations)
            awaited = self._departures.awaited(path)
            listed = zk.children(lock_path(name), include_data=True) if awaited else None
            deleted = failure(await committed) is None
            if listed is not None:
                children = await children_of(listed)
        finally:
            # Failed or not, whoever waits for the entry is woken (to read the queue itself).
            self._departed([Departure(name, session_id, path, children if deleted else None)])
        return deleted

    async def _leave(self, name: str, session_id: str, path: str) -> None:
        """Delete the entry `path` and the session's place, unless the entry is gone already."""
        place = place_path(session_id, name)

        def operations(tx: Any) -> None:
            tx.delete(path)  # fails when this entry is gone: then the place is not ours
            tx.delete(place)

        zk = await self._zk.requests()
        if failure(await zk.commit(operations)) is None:
            self._departed([Departure(name, session_id, path, None)])

    async def _set(self, path: str, data: bytes, version: int) -> Any:
        return await (await self._zk.requests()).set(path, data, version)

    async def _drop_children(self, name: str, children: list[str]) -> None:
        """Delete children of lock `name` that are over: lock-delay markers, orphaned entries.

        An entry whose session node is gone is an orphan (a session's end deletes its entries
        in the same transaction, so none should be left; this keeps a waiter from spinning on
        one should it happen).
        """
        zk = await self._zk.requests()
        deletes = [zk.delete(f"{lock_path(name)}/{child}") for child in children]
        for delete in deletes:
            with contextlib.suppress(NoNodeError):  # another contender was first
                await delete

    def _departed(self, departures: list[Departure]) -> None:
        for departure in departures:
            grant = self._grants.get((departure.name, departure.session_id))
            if grant is not None and grant.path == departure.path:
                del self._grants[departure.name, departure.session_id]
            self._departures.left(departure.path, departure.queue)

    def _reconnected(self) -> None:
        self._departures.wake_all()
        self._sessions.ends.watches_lost()


def _awaited(queue: LockQueue, mine: QueuedEntry) -> tuple[QueuedEntry, ...]:
    """Return the entries `mine` waits for: `LockQueue.blockers`, fewer for a permit.

    A permit waits for any earlier entry to leave; but when all of them are permits of its
    semaphore, the first `permits` of them hold it and it holds only after one of those left
    (entries only ever join behind it), so it waits for the holders alone: on a busy semaphore
    that is fewer watches, fewer leases to look after and no wake-up when an earlier waiter
    gives up. An earlier waiter whose session expired is noticed once it holds.
    """
    blockers = queue.blockers(mine)
    if (
        blockers
        and mine.mode is LockMode.PERMIT
        and all(other.mode is mine.mode and other.permits == mine.permits for other in blockers)
    ):
        return queue.holders
    return blockers


def _find(children: list[str], session_id: str) -> QueueNode | None:
    """Return the session's entry among a lock's children (its oldest, should there be two)."""
    nodes = [node for node in parse_children(children)[0] if node.entry.session_id == session_id]
    return min(nodes, key=lambda node: node.entry.token, default=None)
