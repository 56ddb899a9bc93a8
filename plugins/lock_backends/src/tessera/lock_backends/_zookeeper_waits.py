from __future__ import annotations

import asyncio
from collections import defaultdict

from tessera.lock_backends._zookeeper_client import Requests, Watch, ZooKeeperConnection

#: A waiter's future: the lock's children as read after the entry left, or None.
Handover = asyncio.Future[list[str] | None]


class Departures:
    """Wakes this process's waiters when a queue entry they wait for leaves.

    Two sources: a ZooKeeper watch per entry node (one per node and process, however many local
    waiters share it), and this process's own releases and session ends, which wake the waiters
    as soon as their transaction is answered, without waiting for the watch's event.

    Each wait is a future that resolves to the lock's children as read right after the entry
    left, when this process made it leave and read them (`Departure.queue`), else to None (the
    waiter reads the queue itself).

    Args:
        connection: Where the watches are set.

    """

    def __init__(self, connection: ZooKeeperConnection) -> None:
        self._zk = connection
        self._waits: dict[str, set[Handover]] = defaultdict(set)
        self._watched: set[str] = set()
        self._leaving: set[str] = set()

    async def wait_for(self, paths: tuple[str, ...]) -> Handover:
        """Return a future that resolves once one of the entry nodes `paths` left.

        The watches are in place when this returns; a node already gone resolves it at once.
        Call `forget` when done with the future.
        """
        future: Handover = asyncio.get_running_loop().create_future()
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
        """Drop a wait returned by `wait_for`."""
        future.cancel()
        for path in paths:
            waits = self._waits.get(path)
            if waits is not None:
                waits.discard(future)
                if not waits:
                    del self._waits[path]

    def awaited(self, path: str) -> bool:
        """Whether a waiter of this process waits for entry `path`."""
        return bool(self._waits.get(path))

    def leaving(self, path: str) -> None:
        """Say that this process is deleting entry `path`: its watch event wakes nobody.

        The deletion's answer will (`left`), with the queue read after it: ZooKeeper sends the
        watch event first, and a waiter woken by it would read the queue once more.
        """
        self._leaving.add(path)

    def left(self, path: str, queue: list[str] | None) -> None:
        """Wake the waiters of entry `path`, which left, handing them `queue`."""
        self._leaving.discard(path)
        for future in self._waits.get(path, ()):
            if not future.done():
                future.set_result(queue)

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
            if path not in self._leaving:
                self.left(path, None)

        return zk.watcher(fired)
