"""Contended lock: N clients take turns on one lock, each holding it 10 ms.

Usage: ``python bench/lock_contended.py [--duration S] [--warmup S] [--concurrency N] [--json]
[--target HOST:PORT] [--smoke]``  (issue 4's figure: ``--concurrency 8``)

Each of ``--concurrency`` clients has its own session and loops: ``Acquire`` (waiting, FIFO),
hold 10 ms, ``Release``. One operation is one such cycle, so ``ops_per_s`` is grants per second
and can at most reach 100 (one 10 ms hold after another); latency is the whole cycle, waiting
included. Cases:

- ``aetcd_lock_contended`` (peer): the same loop with aetcd's own lock (etcd's recipe without
  FIFO wake-ups or fencing), straight to the same etcd.
- ``lock_contended``: the loop through the lock service on the etcd backend with the SDK
  (``LockClient.acquire`` and ``release``, sent over the Commands stream), compared with the
  peer.
- ``lock_contended_unary``: the same loop with the ``Acquire`` and ``Release`` calls, compared
  with ``lock_contended`` (what the stream saves on each hand-off).
- ``redis_lock_contended`` (peer): python-redis-lock (``SET NX`` + ``BLPOP`` wake-ups, no
  fencing), one redis-py client and thread per client, on the same Redis.
- ``lock_contended_redis``: the loop on the Redis backend, compared with python-redis-lock.
- ``kazoo_lock_contended`` (peer): kazoo's ``Lock`` recipe, one kazoo client (ZooKeeper
  connection) and thread per client, on the same ZooKeeper (left out when ZooKeeper is not
  installed, as in lock_uncontended.py).
- ``lock_contended_zookeeper``: the loop on the ZooKeeper backend, compared with kazoo's lock.

The peers whose API blocks (python-redis-lock, kazoo) run each client's whole cycle on a thread
of its own, holding with ``time.sleep``.

Before the etcd and Redis service cases, a line on stderr gives the hand-off floor: the same
hops (one Echo call on the service, one backend write) timed after the same 10 ms of idleness.
Before everything, one line gives grpc.aio's own floor: one message round trip on an open
stream of a bare server, after 10 ms of idleness and back to back.

After each case a line on stderr gives what the records cannot: the share of the time the lock
was held (goal >= 95 %), the mean handoff (the idle gap between one holder and the next; goal
<= 0.5 ms) and max/min grants per client (fairness; goal <= 1.2). With ``--target`` only
``lock_contended`` runs, against that service.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aetcd
import grpc
import redis_lock  # type: ignore[import-untyped]  # python-redis-lock ships no types
from _echo_server import BARE_EXCHANGE
from _lock_workers import WorkerPool
from _lock_zookeeper import KazooThreads, kazoo_clients
from floor import echo_client, echo_server
from harness import BenchOptions, CaseResult, Comparison, Endpoint, ServerHandle, measure, run
from lock_uncontended import backends, lock_service
from redis import Redis
from redis.asyncio import Redis as RedisAsync

from tessera.client.lock import LockClient, Session
from tessera.proto.lock.v1 import lock_pb2, lock_pb2_grpc

HOLD_S = 0.010
_SESSION_TTL_S = 30


class Occupancy:
    """Counts grants per client and time held, to report busy share, handoff and fairness."""

    def __init__(self) -> None:
        self.grants: Counter[int] = Counter()
        self.held_s = 0.0
        self.started = time.perf_counter()
        #: How many may hold at once: the time that could be held is `permits` x wall time.
        self.permits = 1

    def reset(self) -> None:
        self.grants.clear()
        self.held_s = 0.0
        self.started = time.perf_counter()

    async def hold(self, client: int) -> None:
        began = time.perf_counter()
        await asyncio.sleep(HOLD_S)
        self.held_s += time.perf_counter() - began
        self.grants[client] += 1

    def hold_blocking(self, client: int) -> None:
        # Holders never overlap (that is what is measured), so the counters need no lock.
        began = time.perf_counter()
        time.sleep(HOLD_S)
        self.held_s += time.perf_counter() - began
        self.grants[client] += 1

    def report(self, case: str, clients: int) -> None:
        print(f"{case}: {self.figures(clients)}", file=sys.stderr)

    def figures(self, clients: int) -> str:
        """Busy share, mean handoff and max/min grants per client since the last reset."""
        capacity_s = (time.perf_counter() - self.started) * self.permits
        total = sum(self.grants.values())
        counts = [self.grants.get(client, 0) for client in range(clients)]
        fairness = max(counts) / min(counts) if min(counts) else float("inf")
        handoff_ms = (capacity_s - self.held_s) / total * 1000 if total else float("nan")
        return (
            f"busy {self.held_s / capacity_s:.1%}, mean handoff {handoff_ms:.2f} ms, "
            f"grants per client max/min {fairness:.2f} ({min(counts)}..{max(counts)})"
        )


async def measured(
    case: str,
    occupancy: Occupancy,
    cycle: Callable[[Any], Awaitable[None]],
    items: list[Any],
    options: BenchOptions,
    server: ServerHandle | None = None,
) -> CaseResult:
    pool = WorkerPool(items)
    if options.warmup_s > 0:
        await measure(case, pool.operation(cycle), _no_warmup(options, options.warmup_s))
    occupancy.reset()
    result = await measure(case, pool.operation(cycle), _no_warmup(options), server=server)
    occupancy.report(case, len(items))
    return result


def _no_warmup(options: BenchOptions, duration_s: float | None = None) -> BenchOptions:
    # The occupancy counters must cover exactly the measured phase.
    duration = options.duration_s if duration_s is None else duration_s
    return dataclasses.replace(options, duration_s=duration, warmup_s=0.0)


async def aetcd_peer(etcd_endpoint: str, options: BenchOptions) -> CaseResult:
    host, _, port = etcd_endpoint.rpartition(":")
    name = f"bench-contended-{uuid.uuid4().hex}"
    occupancy = Occupancy()
    async with aetcd.Client(host=host, port=int(port)) as client:

        async def cycle(index: int) -> None:
            lock = client.lock(name.encode(), ttl=_SESSION_TTL_S)
            if not await lock.acquire(timeout=30):
                raise RuntimeError("aetcd's lock was not granted within 30 s")
            await occupancy.hold(index)
            await lock.release()

        return await measured(
            "aetcd_lock_contended", occupancy, cycle, list(range(options.concurrency)), options
        )


async def service_contended(
    case: str,
    endpoint: Endpoint,
    server: ServerHandle | None,
    options: BenchOptions,
    *,
    unary: bool = False,
) -> CaseResult:
    """Run the contended loop through the SDK (Commands stream), or with ``unary`` raw calls."""
    name = f"bench/contended/{uuid.uuid4().hex}"
    occupancy = Occupancy()
    async with grpc.aio.insecure_channel(str(endpoint)) as channel, LockClient(channel) as client:
        stub = lock_pb2_grpc.LockStub(channel)
        sessions = [
            (index, await client.open_session(_SESSION_TTL_S))
            for index in range(options.concurrency)
        ]

        async def sdk_cycle(item: tuple[int, Session]) -> None:
            index, session = item
            held = await client.acquire(name, session, wait=30)
            if held is None:
                raise RuntimeError("the lock was not granted within 30 s")
            await occupancy.hold(index)
            await client.release(held)

        async def unary_cycle(item: tuple[int, Session]) -> None:
            index, session = item
            request = lock_pb2.AcquireRequest(
                name=name, session_id=session.id, mode=lock_pb2.LOCK_MODE_EXCLUSIVE
            )
            request.wait_timeout.FromSeconds(30)
            granted = await stub.Acquire(request)
            if not granted.acquired:
                raise RuntimeError("the lock was not granted within 30 s")
            await occupancy.hold(index)
            await stub.Release(
                lock_pb2.ReleaseRequest(name=name, session_id=session.id, token=granted.token)
            )

        cycle = unary_cycle if unary else sdk_cycle
        try:
            return await measured(case, occupancy, cycle, sessions, options, server)
        finally:
            for _, session in sessions:
                await session.close()


async def idle_handoff_floor(
    label: str,
    endpoint: Endpoint,
    backend_operation: Callable[[], Awaitable[object]],
    options: BenchOptions,
) -> None:
    """Print the floor of a hand-off: the same hops with no lock logic, after the same idle time.

    A hand-off starts when a holder wakes from its 10 ms hold, with every process idle. It
    needs at least one message to the service, one backend write and one message back: here one
    Echo call on the lock service, then one backend operation from the client, each cycle after a
    10 ms sleep. On this machine idle processes wake slowly, so this is well above the same calls
    made back to back (compare ``lock_unary_echo`` in lock_uncontended.py).
    """
    async with echo_client(endpoint) as echo:
        gaps = []
        deadline = time.perf_counter() + options.duration_s
        while time.perf_counter() < deadline:
            await asyncio.sleep(HOLD_S)
            began = time.perf_counter()
            await echo.echo()
            await backend_operation()
            gaps.append(time.perf_counter() - began)
    print(
        f"{label}: hand-off floor after {HOLD_S * 1000:.0f} ms idle: median "
        f"{statistics.median(gaps) * 1000:.2f} ms (one Echo call + one backend write)",
        file=sys.stderr,
    )


async def bare_idle_round_trip(options: BenchOptions) -> None:
    """Print what one message round trip costs grpc.aio alone, after the same idle time.

    On an open bidirectional stream of bench/_echo_server.py's bare server (no Tessera code on
    either side): each round trip after a 10 ms sleep, then back to back. A hand-off cannot be
    shorter than one such round trip (the holder's release out, the next grant back) plus one
    backend write, whatever the service does.
    """
    async with (
        echo_server("bare") as server,
        grpc.aio.insecure_channel(str(server.endpoint)) as channel,
    ):
        call: grpc.aio.StreamStreamCall[bytes, bytes] = channel.stream_stream(BARE_EXCHANGE)()
        message = b"x" * 64

        async def round_trip() -> float:
            began = time.perf_counter()
            await call.write(message)
            if await call.read() != message:
                raise RuntimeError("the bare server did not echo the message")
            return time.perf_counter() - began

        idle = []
        deadline = time.perf_counter() + options.duration_s
        while time.perf_counter() < deadline:
            await asyncio.sleep(HOLD_S)
            idle.append(await round_trip())
        busy = [await round_trip() for _ in range(len(idle))]
        await call.done_writing()
    print(
        f"grpc.aio alone: one message round trip on an open stream after {HOLD_S * 1000:.0f} ms"
        f" idle: median {statistics.median(idle) * 1000:.2f} ms (back to back:"
        f" {statistics.median(busy) * 1000:.2f} ms)",
        file=sys.stderr,
    )


async def redis_lock_peer(redis_url: str, options: BenchOptions) -> CaseResult:
    name = f"bench-contended-{uuid.uuid4().hex}"
    occupancy = Occupancy()
    clients = [Redis.from_url(redis_url) for _ in range(options.concurrency)]
    threads = KazooThreads(options.concurrency)

    def blocking_cycle(index: int) -> None:
        lock = redis_lock.Lock(clients[index], name, expire=_SESSION_TTL_S)
        if not lock.acquire(blocking=True, timeout=30):
            raise RuntimeError("python-redis-lock was not granted within 30 s")
        occupancy.hold_blocking(index)
        lock.release()

    async def cycle(index: int) -> None:
        await threads.run(lambda: blocking_cycle(index))

    try:
        return await measured(
            "redis_lock_contended", occupancy, cycle, list(range(options.concurrency)), options
        )
    finally:
        threads.close()
        for client in clients:
            client.close()


async def kazoo_lock_peer(hosts: str, options: BenchOptions) -> CaseResult:
    path = f"/bench/contended/{uuid.uuid4().hex}"
    occupancy = Occupancy()
    threads = KazooThreads(options.concurrency)
    async with kazoo_clients(hosts, options.concurrency) as clients:
        locks = [client.Lock(path) for client in clients]

        cycle = threads.cycles(locks, occupancy.hold_blocking, "kazoo's lock", 30)

        try:
            return await measured(
                "kazoo_lock_contended", occupancy, cycle, list(range(len(locks))), options
            )
        finally:
            threads.close()


async def bench(options: BenchOptions) -> list[Comparison]:
    if options.target is not None:
        return [
            Comparison(await service_contended("lock_contended", options.target, None, options))
        ]
    await bare_idle_round_trip(options)
    async with backends() as servers:
        peer = await aetcd_peer(servers.etcd_endpoint, options)
        async with lock_service("etcd", servers) as (endpoint, server):
            host, _, port = servers.etcd_endpoint.rpartition(":")
            async with aetcd.Client(host=host, port=int(port)) as etcd:
                await idle_handoff_floor(
                    "etcd", endpoint, lambda: etcd.delete(b"/bench/idle-floor"), options
                )
            ours = await service_contended("lock_contended", endpoint, server, options)
            unary = await service_contended(
                "lock_contended_unary", endpoint, server, options, unary=True
            )
        redis_peer = await redis_lock_peer(servers.redis_url, options)
        async with lock_service("redis", servers) as (endpoint, server):
            redis = RedisAsync.from_url(servers.redis_url)
            try:
                await idle_handoff_floor(
                    "redis", endpoint, lambda: redis.delete("bench:idle-floor"), options
                )
            finally:
                await redis.aclose()
            on_redis = await service_contended("lock_contended_redis", endpoint, server, options)
        comparisons = [
            Comparison(ours, peer),
            Comparison(unary, ours),
            Comparison(on_redis, redis_peer),
        ]
        if servers.zookeeper_hosts is not None:
            zookeeper_peer = await kazoo_lock_peer(servers.zookeeper_hosts, options)
            async with lock_service("zookeeper", servers) as (endpoint, server):
                on_zookeeper = await service_contended(
                    "lock_contended_zookeeper", endpoint, server, options
                )
            comparisons.append(Comparison(on_zookeeper, zookeeper_peer))
        return comparisons


if __name__ == "__main__":
    sys.exit(run(__doc__ or "", bench))
