"""ZooKeeper floors and kazoo's own lock, for bench/lock_uncontended.py and lock_contended.py.

kazoo's API blocks, so each blocking call runs on a thread of a pool with one thread per worker
(a waiting `Lock.acquire` holds its thread); `zookeeper_create_delete` instead goes through
`tessera.lock_backends.ZooKeeperConnection`, the asynchronous bridge the backend uses, so that
the two floors show what the bridge costs or saves against threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
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
