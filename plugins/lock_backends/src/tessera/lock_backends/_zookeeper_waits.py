from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from kazoo.exceptions import NoNodeError  # type: ignore[import-untyped]  # kazoo ships no types

from tessera.core import BackendError
from tessera.lock_backends._queue import LockQueue, QueuedEntry
from tessera.lock_backends._zookeeper_client import Requests, Watch, ZooKeeperConnection
from tessera.lock_backends._zookeeper_layout import DelayMarker, QueueNode, parse_children

#: Locks whose latest children this process remembers (the least recently read are forgotten).
_LOCKS_KEPT = 256


@dataclass(frozen=True)
class Children:
    """A lock's children as read at one point of ZooKeeper's history.

    One read is handed to every waiter of the lock that a departure wakes: it is parsed once,
    for all of them (`parsed`, `node_names`, `queue`).

    Attributes:
        names: The children's names.
        zxid: The lock node's `pzxid` when they were read: the last change to its children.
            zxids only grow, so of two reads of one lock the one with the larger `zxid` is the
            later (0: the lock node did not exist).

    """

    names: list[str]
    zxid: int

    @cached_property
    def parsed(self) -> tuple[list[QueueNode], list[DelayMarker]]:
        """The queue entries and lock-delay markers among the children (`parse_children`)."""
        return parse_children(self.names)

    @cached_property
    def node_names(self) -> dict[QueuedEntry, str]:
        """The name of each queue entry's node."""
        return {node.entry: node.name for node in self.parsed[0]}

    @cached_property
    def queue(self) -> LockQueue:
        """The queue of the entries."""
        return LockQueue(node.entry for node in self.parsed[0])


async def children_of(listed: asyncio.Future[Any]) -> Children:
    """Await a `Requests.children(lock, include_data=True)` sent before (none: no lock node)."""
    try:
        names, stat = await listed
    except NoNodeError:
        return Children([], 0)
    return Children(names, int(stat.pzxid))


async def read_children(zk: Requests, lock: str) -> Children:
    """Read the children of the lock node `lock` (none when it does not exist)."""
    return await children_of(zk.children(lock, include_data=True))


#: A waiter's future: the lock's children as read after the entry left, or None.
Handover = asyncio.Future[Children | None]


class Departures:
    """Wakes this process's waiters when a queue entry they wait for leaves.

    Two sources: a ZooKeeper watch per entry node (one per node and process, however many local
    waiters share it), and this process's own releases and session ends, which wake the waiters
    as soon as their transaction is answered, without waiting for the watch's event.

    Each wait is a future that resolves to the lock's children as read after the entry left, so
    that the woken waiters need not read them: a release of this process reads them in the
    same round trip as its transaction (`Departure.queue`), and a watch event (another
    process's release) makes one read for every waiter of the entry. It resolves to None (the
    waiter reads the queue itself) when that read failed or the watches may have been lost.

    The latest children read of each lock are kept (`seen`): a waiter whose own read is older
    than a departure it would wait for is answered at once with the newer read (several
    releases of one semaphore overlap, and the children handed over by the first may already
    be out of date when its waiters run).

    Args:
        connection: Where the watches are set.

    """

    def __init__(self, connection: ZooKeeperConnection) -> None:
        self._zk = connection
        self._waits: dict[str, set[Handover]] = defaultdict(set)
        self._watched: set[str] = set()
        self._leaving: set[str] = set()
        self._latest: OrderedDict[str, Children] = OrderedDict()
        self._reads: set[asyncio.Task[None]] = set()

    def seen(self, lock: str, children: Children) -> Children:
        """Record a read of the children of lock node `lock`; return the latest one known."""
        latest = self._latest.get(lock)
        if latest is None or latest.zxid < children.zxid:
            latest = self._latest[lock] = children
        self._latest.move_to_end(lock)
        if len(self._latest) > _LOCKS_KEPT:
            self._latest.popitem(last=False)
        return latest

    async def wait_for(self, lock: str, names: tuple[str, ...], read: Children) -> Handover:
        """Return a future that resolves once one of the entries `names` of `lock` left.

        The watches are in place when this returns; an entry already gone resolves it at once
        (to a later read that lacks it, when one is known). Call `forget` when done with it.

        Args:
            lock: The lock's node.
            names: The entries (children of `lock`) to wait for.
            read: The children the caller found them in.

        """
        future: Handover = asyncio.get_running_loop().create_future()
        paths = tuple(f"{lock}/{name}" for name in names)
        latest = self._latest.get(lock)
        if latest is not None and latest.zxid > read.zxid and not set(names) <= set(latest.names):
            future.set_result(latest)
            return future
        for path in paths:
            self._waits[path].add(future)
        try:
            await self._watch_all(paths, future)
        except BaseException:
            self.forget(future, paths)
            raise
        return future

    async def _watch_all(self, paths: tuple[str, ...], future: Handover) -> None:
        zk = await self._zk.requests()
        # A path still watched has not left yet, or its event is on its way: no need to ask.
        checks = {
            path: zk.exists(path, self._watch(zk, path))
            for path in paths
            if path not in self._watched
        }
        self._watched.update(checks)
        for path, check in checks.items():
            try:
                stat = await check
            except BaseException:
                self._watched.difference_update(checks)  # unknown whether they were set
                raise
            if stat is None:
                # Gone already (the watch now waits for a creation that never comes).
                self._watched.discard(path)
                if not future.done():
                    future.set_result(None)

    def forget(self, future: Handover, paths: tuple[str, ...]) -> None:
        """Drop a wait returned by `wait_for`; `paths` are the nodes of its entries."""
        future.cancel()
        for path in paths:
            waits = self._waits.get(path)
            if waits is not None:
                waits.discard(future)
                if not waits:
                    del self._waits[path]

    def awaited(self, path: str) -> bool:
        """Whether a waiter of this process waits for entry `path` and was not woken yet."""
        return any(not future.done() for future in self._waits.get(path, ()))

    def leaving(self, path: str) -> None:
        """Say that this process is deleting entry `path`: its watch event wakes nobody.

        The deletion's answer will (`left`), with the queue read after it: ZooKeeper sends the
        watch event first, and a waiter woken by it would read the queue once more.
        """
        self._leaving.add(path)

    def left(self, path: str, queue: Children | None) -> None:
        """Wake the waiters of entry `path`, which left, handing them `queue` (or a later read)."""
        self._leaving.discard(path)
        handed = None if queue is None else self.seen(path.rpartition("/")[0], queue)
        for future in self._waits.get(path, ()):
            if not future.done():
                future.set_result(handed)

    def wake_all(self) -> None:
        """Wake every waiter to read its queue again (the watches may be lost)."""
        self._watched.clear()
        for waits in self._waits.values():
            for future in waits:
                if not future.done():
                    future.set_result(None)

    def _watch(self, zk: Requests, path: str) -> Watch:
        def fired() -> None:
            self._watched.discard(path)
            if path not in self._leaving and self.awaited(path):
                # Another process made it leave: one read for all of its waiters here.
                read = asyncio.create_task(self._read_after(zk, path))
                self._reads.add(read)
                read.add_done_callback(self._reads.discard)

        return zk.watcher(fired)

    async def _read_after(self, zk: Requests, path: str) -> None:
        """Read the lock's children after entry `path` left, and hand them to its waiters."""
        queue = None
        try:
            with contextlib.suppress(BackendError):  # the waiters read it themselves
                queue = await read_children(zk, path.rpartition("/")[0])
        finally:
            self.left(path, queue)
