"""ZooKeeper floors and kazoo's recipes, for the lock benchmarks.

Floors and kazoo's lock for bench/lock_uncontended.py and lock_contended.py; kazoo's election
(`KazooCandidate`, `LeaderWatch`) for bench/lock_election.py.

kazoo's API blocks, so each blocking call runs on a thread of a pool with one thread per worker
(a waiting `Lock.acquire` holds its thread); `zookeeper_create_delete` instead goes through
`tessera.lock_backends.ZooKeeperConnection`, the asynchronous bridge the backend uses, so that
the two floors show what the bridge costs or saves against threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from _lock_workers import WorkerPool
from harness import BenchOptions, CaseResult, measure
from kazoo.client import KazooClient  # type: ignore[import-untyped]  # kazoo ships no types
from kazoo.exceptions import NodeExistsError  # type: ignore[import-untyped]  # kazoo: no types

from tessera.lock_backends import ZooKeeperConnection

T = TypeVar("T")


class KazooThreads:
    """Runs blocking kazoo calls on a pool with one thread per worker."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kazoo-bench")

    async def run(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def cycles(
        self, recipes: list[Any], hold: Callable[[int], None], what: str, wait_s: float
    ) -> Callable[[int], Awaitable[None]]:
        """Return a worker's cycle for kazoo's Lock or Semaphore, run on a thread.

        Worker `index` takes `recipes[index]` (blocking, at most `wait_s`), calls `hold(index)`
        and gives it back.
        """

        def blocking_cycle(index: int) -> None:
            if not recipes[index].acquire(blocking=True, timeout=wait_s):
                raise RuntimeError(f"{what} granted nothing within {wait_s} s")
            hold(index)
            recipes[index].release()

        async def cycle(index: int) -> None:
            await self.run(lambda: blocking_cycle(index))

        return cycle


@asynccontextmanager
async def kazoo_clients(hosts: str, count: int) -> AsyncIterator[list[Any]]:
    """Start `count` kazoo clients (one ZooKeeper connection each), stopped on exit."""
    clients = [KazooClient(hosts=hosts) for _ in range(count)]
    for client in clients:
        await asyncio.to_thread(client.start, 15)
    try:
        yield clients
    finally:
        for client in clients:
            await asyncio.to_thread(client.stop)
            await asyncio.to_thread(client.close)


async def zookeeper_floor(hosts: str, options: BenchOptions) -> CaseResult:
    """``zookeeper_create_delete``: create then delete one node per worker, asynchronously."""
    connection = ZooKeeperConnection(hosts, lambda: None)
    try:
        zk = await connection.requests()
        paths = [f"/bench/lock-floor/{uuid.uuid4().hex}" for _ in range(options.concurrency)]
        with contextlib.suppress(NodeExistsError):
            await zk.create("/bench/lock-floor", makepath=True)

        async def create_delete(path: str) -> None:
            await zk.create(path)
            await zk.delete(path)

        return await measure(
            "zookeeper_create_delete", WorkerPool(paths).operation(create_delete), options
        )
    finally:
        await connection.close()


async def kazoo_thread_floor(hosts: str, options: BenchOptions) -> CaseResult:
    """``kazoo_create_delete_thread``: the same with kazoo's blocking calls on threads."""
    threads = KazooThreads(options.concurrency)
    try:
        async with kazoo_clients(hosts, 1) as (client,):
            paths = [f"/bench/lock-floor/{uuid.uuid4().hex}" for _ in range(options.concurrency)]
            client.ensure_path("/bench/lock-floor")

            def create_delete(path: str) -> None:
                client.create(path)
                client.delete(path)

            async def cycle(path: str) -> None:
                await threads.run(lambda: create_delete(path))

            return await measure(
                "kazoo_create_delete_thread", WorkerPool(paths).operation(cycle), options
            )
    finally:
        threads.close()


async def kazoo_lock_uncontended(hosts: str, options: BenchOptions) -> CaseResult:
    """``kazoo_lock_uncontended``: kazoo's `Lock` recipe, acquire + release, a lock per worker."""
    threads = KazooThreads(options.concurrency)
    try:
        async with kazoo_clients(hosts, 1) as (client,):
            locks = [
                client.Lock(f"/bench/kazoo-lock/{uuid.uuid4().hex}")
                for _ in range(options.concurrency)
            ]

            def acquire_release(lock: Any) -> None:
                if not lock.acquire(blocking=False):
                    raise RuntimeError("an uncontended kazoo lock was not granted")
                lock.release()

            async def cycle(lock: Any) -> None:
                await threads.run(lambda: acquire_release(lock))

            return await measure(
                "kazoo_lock_uncontended", WorkerPool(locks).operation(cycle), options
            )
    finally:
        threads.close()


def _sequence(node: str) -> str:
    # kazoo's lock nodes end with ZooKeeper's 10-digit sequence number: it orders the queue.
    return node[-10:]


class LeaderWatch:
    """Follows who leads a kazoo election, as a follower would: a children watch on its path.

    kazoo's `Election` is its `Lock`: the leader is the contender whose node has the lowest
    sequence number. The watch's callback (on kazoo's event thread) records when each node
    became the lowest; `wait_for` blocks until a node of one contender is.
    """

    def __init__(self, client: Any, path: str) -> None:
        self._changed = threading.Condition()
        self.leader = ""
        self.leader_since_ns = 0
        self.contenders = 0
        client.ensure_path(path)
        client.ChildrenWatch(path, self._children)

    def _children(self, children: list[str]) -> None:
        now = time.perf_counter_ns()
        with self._changed:
            self.contenders = len(children)
            lowest = min(children, key=_sequence) if children else ""
            if lowest != self.leader:
                self.leader, self.leader_since_ns = lowest, now
            self._changed.notify_all()

    def wait_for(self, prefix: str, timeout_s: float) -> int:
        """Block until a node starting with `prefix` leads; return when it began to."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.leader.startswith(prefix), timeout_s):
                raise RuntimeError(f"no node {prefix}... led within {timeout_s} s")
            return self.leader_since_ns

    def wait_contenders(self, count: int, timeout_s: float) -> None:
        """Block until the election has `count` contenders."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.contenders >= count, timeout_s):
                raise RuntimeError(f"fewer than {count} contenders after {timeout_s} s")


class KazooCandidate:
    """A contender of a kazoo `Election` on a thread of its own, leading until told to resign.

    `start` runs `Election.run` in a loop on a daemon thread: each time it is elected it waits
    for `resign` (or `stop`), and then campaigns again.
    """

    def __init__(self, client: Any, path: str, identifier: str) -> None:
        self.election = client.Election(path, identifier)
        #: Every node of this contender starts with it (kazoo's lock prefix).
        self.prefix: str = self.election.lock.prefix
        self._resign = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._campaign, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def resign(self) -> int:
        """Tell the leader to step down; return when (perf_counter_ns)."""
        at = time.perf_counter_ns()
        self._resign.set()
        return at

    def stop(self) -> None:
        """Stop campaigning; the thread ends once its current `run` returns."""
        self._stopped = True
        self._resign.set()
        self.election.cancel()

    def _campaign(self) -> None:
        def lead() -> None:
            self._resign.wait()
            self._resign.clear()

        while not self._stopped:
            # A partitioned contender's release fails: that is the fault being measured.
            with contextlib.suppress(Exception):
                self.election.run(lead)
