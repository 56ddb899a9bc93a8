"""Uncontended acquire + release on the lock service against the raw etcd work and one gRPC call.

Usage: ``python bench/lock_uncontended.py [--duration S] [--warmup S] [--concurrency N] [--json]
[--target HOST:PORT] [--smoke]``

Cases, each measured right after its baseline in the same run:

- ``etcd_txn_put_delete`` (floor): what the backend must do at least, straight to etcd with
  aetcd: a put-if-absent transaction bound to a lease, then a delete, on one key per worker.
- ``lock_unary_echo`` (floor): one Diagnostics.Echo call on the lock service: the gRPC cost of
  one call through the server kit.
- ``lock_acquire_release``: ``try_acquire`` then ``release`` with the SDK (``LockClient``, which
  sends both as messages of the Commands stream) through the lock service on the etcd backend,
  one session and lock name per worker (no contention), compared with ``etcd_txn_put_delete``.
  The goal (issue 4): p50 <= 1.5 x the etcd floor's p50 plus one gRPC call (one
  ``lock_unary_echo`` p50).
- ``lock_acquire_release_unary``: the same cycle as the ``TryAcquire`` and ``Release`` calls,
  compared with ``lock_acquire_release`` (the cost of two unary calls instead of two messages).
- ``redis_set_nx_del`` (floor): ``SET NX PX`` then ``DEL`` with redis-py asyncio.
- ``lock_acquire_release_redis``: the SDK's cycle on a lock service with the Redis backend,
  compared with ``redis_set_nx_del``.
- ``postgres_insert_delete`` (floor): an ``INSERT`` then a ``DELETE`` of one row, asyncpg.
- ``lock_acquire_release_postgres``: the same cycle on the PostgreSQL backend, compared with
  ``postgres_insert_delete``.
- ``zookeeper_create_delete`` (floor): create then delete one node, through the asynchronous
  kazoo bridge the backend uses (`ZooKeeperConnection`), compared with
  ``kazoo_create_delete_thread``: the same with kazoo's blocking calls on a thread pool.
- ``lock_acquire_release_zookeeper``: the cycle on the ZooKeeper backend, compared with
  ``zookeeper_create_delete``.
- ``kazoo_lock_uncontended`` (peer): kazoo's own ``Lock`` recipe, acquire (non-blocking) and
  release, on threads, compared with ``zookeeper_create_delete``.

After the cases, the goal is checked per backend in 3 rounds (1 with ``--smoke``), each measuring
back to back on that backend's lock service an Echo call, the backend floor and the SDK cycle:
one line per round on stderr compares the cycle's p50 with the goal's bound (1.5 x the backend
floor's p50 + the Echo call's p50), and one line per backend gives the median ratio and the
verdict. Each backend is checked twice: on a service with the default settings, then on one that
busy-polls (``TESSERA_BUSY_POLL_US``, ``GOAL_BUSY_POLL_US``).

The script starts etcd, Redis, PostgreSQL, ZooKeeper (when installed: it comes from a system
package; without it the ZooKeeper cases are left out, with a note on stderr) and one lock
service per backend in child processes; with ``--target`` it measures that lock service (no
backend floor: its backend is not known).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aetcd
import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import grpc
from _lock_workers import WorkerPool
from _lock_zookeeper import kazoo_lock_uncontended, kazoo_thread_floor, zookeeper_floor
from floor import echo_client
from harness import (
    BenchOptions,
    CaseResult,
    Comparison,
    Endpoint,
    ServerHandle,
    free_port,
    measure,
    run,
    server_process,
)
from redis.asyncio import Redis

from tessera.client.lock import LockClient, Session
from tessera.core.embedded import (
    BinaryNotFoundError,
    EtcdServer,
    PostgresServer,
    RedisServer,
    ZooKeeperServer,
    find_binary,
)
from tessera.proto.lock.v1 import lock_pb2, lock_pb2_grpc

_SESSION_TTL_S = 30


async def etcd_floor(endpoint: str, options: BenchOptions) -> Any:
    host, _, port = endpoint.rpartition(":")
    async with aetcd.Client(host=host, port=int(port)) as client:
        lease = await client.lease(_SESSION_TTL_S)
        keys = [
            f"/bench/lock-floor/{uuid.uuid4().hex}".encode() for _ in range(options.concurrency)
        ]

        async def put_delete(key: bytes) -> None:
            tx = client.transactions
            created, _ = await client.transaction(
                compare=[tx.create(key) == 0],
                success=[tx.put(key, b"x", lease=lease.id)],
                failure=[],
            )
            if not created:
                raise RuntimeError("the floor's key already existed")
            await client.delete(key)

        return await measure("etcd_txn_put_delete", WorkerPool(keys).operation(put_delete), options)


async def redis_floor(url: str, options: BenchOptions) -> Any:
    client = Redis.from_url(url)
    keys = [f"bench:lock-floor:{uuid.uuid4().hex}" for _ in range(options.concurrency)]

    async def set_delete(key: str) -> None:
        if not await client.set(key, b"x", nx=True, px=_SESSION_TTL_S * 1000):
            raise RuntimeError("the floor's key already existed")
        await client.delete(key)

    try:
        return await measure("redis_set_nx_del", WorkerPool(keys).operation(set_delete), options)
    finally:
        await client.aclose()


async def postgres_floor(dsn: str, options: BenchOptions) -> Any:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=options.concurrency)
    try:
        await pool.execute("CREATE TABLE IF NOT EXISTS bench_lock_floor (k text PRIMARY KEY)")
        keys = [uuid.uuid4().hex for _ in range(options.concurrency)]

        async def insert_delete(key: str) -> None:
            await pool.execute("INSERT INTO bench_lock_floor (k) VALUES ($1)", key)
            await pool.execute("DELETE FROM bench_lock_floor WHERE k = $1", key)

        return await measure(
            "postgres_insert_delete", WorkerPool(keys).operation(insert_delete), options
        )
    finally:
        await pool.close()


async def acquire_release(
    case: str,
    endpoint: Endpoint,
    server: ServerHandle | None,
    options: BenchOptions,
    *,
    unary: bool = False,
) -> Any:
    """Measure try-acquire + release, one session and lock name per worker.

    Through the SDK (`LockClient`, which sends both over the Commands stream), or with
    ``unary`` through the TryAcquire and Release calls.
    """
    async with grpc.aio.insecure_channel(str(endpoint)) as channel, LockClient(channel) as client:
        stub = lock_pb2_grpc.LockStub(channel)
        sessions = [await client.open_session(_SESSION_TTL_S) for _ in range(options.concurrency)]
        pairs = [(session, f"bench/uncontended/{uuid.uuid4().hex}") for session in sessions]

        async def sdk_cycle(pair: tuple[Session, str]) -> None:
            session, name = pair
            held = await client.try_acquire(name, session)
            if held is None:
                raise RuntimeError(f"uncontended lock {name} was not granted")
            if not await client.release(held):
                raise RuntimeError(f"lock {name} was not released")

        async def unary_cycle(pair: tuple[Session, str]) -> None:
            session, name = pair
            granted = await stub.TryAcquire(
                lock_pb2.AcquireRequest(
                    name=name, session_id=session.id, mode=lock_pb2.LOCK_MODE_EXCLUSIVE
                )
            )
            if not granted.acquired:
                raise RuntimeError(f"uncontended lock {name} was not granted")
            released = await stub.Release(
                lock_pb2.ReleaseRequest(name=name, session_id=session.id, token=granted.token)
            )
            if not released.released:
                raise RuntimeError(f"lock {name} was not released")

        cycle = unary_cycle if unary else sdk_cycle
        try:
            return await measure(case, WorkerPool(pairs).operation(cycle), options, server=server)
        finally:
            for session in sessions:
                await session.close()


@dataclass(frozen=True)
class Backends:
    """Where the backend servers of one run listen."""

    etcd_endpoint: str
    redis_url: str
    postgres_dsn: str
    zookeeper_hosts: str | None


@asynccontextmanager
async def backends() -> AsyncIterator[Backends]:
    """Start etcd, Redis, PostgreSQL and (when installed) ZooKeeper for the run."""
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as directory:
        # PostgreSQL runs as an unprivileged account when this runs as root: it must reach its
        # data directory.
        os.chmod(directory, 0o755)
        async with AsyncExitStack() as stack:
            servers = []
            for server in (
                EtcdServer(f"{directory}/etcd"),
                RedisServer(f"{directory}/redis"),
                PostgresServer(f"{directory}/postgres"),
            ):
                servers.append(await asyncio.to_thread(server.start))
                stack.push_async_callback(asyncio.to_thread, server.stop)
            etcd, redis, postgres = servers
            assert isinstance(etcd, EtcdServer)
            assert isinstance(redis, RedisServer)
            assert isinstance(postgres, PostgresServer)
            zookeeper_hosts = None
            try:
                find_binary("zkServer.sh")
            except BinaryNotFoundError as error:
                print(f"ZooKeeper cases left out: {error.message}", file=sys.stderr)
            else:
                zookeeper = ZooKeeperServer(f"{directory}/zookeeper")
                await asyncio.to_thread(zookeeper.start)
                stack.push_async_callback(asyncio.to_thread, zookeeper.stop)
                zookeeper_hosts = zookeeper.hosts
            yield Backends(etcd.endpoint, redis.url, postgres.dsn, zookeeper_hosts)


@asynccontextmanager
async def lock_service(
    backend: str, servers: Backends, *, busy_poll_us: int | None = None
) -> AsyncIterator[tuple[Endpoint, ServerHandle]]:
    """Run a lock service on `backend`; `busy_poll_us` sets TESSERA_BUSY_POLL_US when given."""
    endpoint = Endpoint("127.0.0.1", free_port())
    env = {
        "TESSERA_PORT": str(endpoint.port),
        "TESSERA_METRICS_PORT": str(free_port()),
        "TESSERA_ETCD_ENDPOINTS": servers.etcd_endpoint,
        "TESSERA_REDIS_URL": servers.redis_url,
        "TESSERA_POSTGRES_DSN": servers.postgres_dsn,
        "TESSERA_ZOOKEEPER_HOSTS": servers.zookeeper_hosts or "",
        "TESSERA_LOCK_BACKEND": backend,
        "TESSERA_LOG_LEVEL": "WARNING",
    }
    if busy_poll_us is not None:
        env["TESSERA_BUSY_POLL_US"] = str(busy_poll_us)
    async with server_process([sys.executable, "-m", "tessera.lock"], endpoint, env=env) as server:
        yield endpoint, server


async def bench(options: BenchOptions) -> list[Comparison]:
    if options.target is not None:
        async with echo_client(options.target) as echo:
            grpc_floor = await measure("lock_unary_echo", echo.echo, options)
        ours = await acquire_release("lock_acquire_release", options.target, None, options)
        return [Comparison(grpc_floor), Comparison(ours, grpc_floor)]
    async with backends() as servers:
        async with lock_service("etcd", servers) as (endpoint, server):
            async with echo_client(endpoint, server) as echo:
                grpc_floor = await measure("lock_unary_echo", echo.echo, options, server=server)
            floor = await etcd_floor(servers.etcd_endpoint, options)
            ours = await acquire_release("lock_acquire_release", endpoint, server, options)
            unary = await acquire_release(
                "lock_acquire_release_unary", endpoint, server, options, unary=True
            )
        async with lock_service("redis", servers) as (endpoint, server):
            redis_base = await redis_floor(servers.redis_url, options)
            on_redis = await acquire_release(
                "lock_acquire_release_redis", endpoint, server, options
            )
        async with lock_service("postgres", servers) as (endpoint, server):
            postgres_base = await postgres_floor(servers.postgres_dsn, options)
            on_postgres = await acquire_release(
                "lock_acquire_release_postgres", endpoint, server, options
            )
        comparisons = [
            Comparison(grpc_floor),
            Comparison(ours, floor),
            Comparison(unary, ours),
            Comparison(on_redis, redis_base),
            Comparison(on_postgres, postgres_base),
        ]
        if servers.zookeeper_hosts is not None:
            comparisons += await zookeeper_cases(servers, options)
        await check_goal(servers, options)
        return comparisons


#: The goal's check runs this many rounds (one with ``--smoke``).
_GOAL_ROUNDS = 3
#: The goal is checked with the services' default settings, then with busy polling this long
#: (TESSERA_BUSY_POLL_US).
GOAL_BUSY_POLL_US = 500


async def check_goal(servers: Backends, options: BenchOptions) -> None:
    """Print on stderr, per backend, how the SDK cycle's p50 compares with issue 4's bound.

    Each backend is checked on a lock service with the default settings, then on one whose event
    loop busy-polls for `GOAL_BUSY_POLL_US`. Each round measures back to back, on that service,
    the Echo call, the backend floor and the SDK cycle, so that a change of the machine's speed
    while the script runs (consecutive runs here gave one backend 0.95x and 1.48x) weighs on all
    three; the median of the rounds' ratios is the verdict.
    """
    floors: list[tuple[str, Callable[[BenchOptions], Awaitable[CaseResult]]]] = [
        ("etcd", lambda o: etcd_floor(servers.etcd_endpoint, o)),
        ("redis", lambda o: redis_floor(servers.redis_url, o)),
        ("postgres", lambda o: postgres_floor(servers.postgres_dsn, o)),
    ]
    hosts = servers.zookeeper_hosts
    if hosts is not None:
        floors.append(("zookeeper", lambda o: zookeeper_floor(hosts, o)))
    rounds = 1 if options.smoke else _GOAL_ROUNDS
    for backend, floor in floors:
        for busy_poll_us in (None, GOAL_BUSY_POLL_US):
            case = f"goal_{backend}" if busy_poll_us is None else f"goal_{backend}_busy_poll"
            ratios = []
            async with lock_service(backend, servers, busy_poll_us=busy_poll_us) as (
                endpoint,
                server,
            ):
                for _ in range(rounds):
                    async with echo_client(endpoint, server) as echo:
                        call = await measure(f"{case}_echo", echo.echo, options, server=server)
                    backend_floor = await floor(options)
                    result = await acquire_release(case, endpoint, server, options)
                    ratios.append(report_goal(result, backend_floor, call))
            median = statistics.median(ratios)
            verdict = "met" if median <= 1 else "not met"
            settings = (
                "default settings" if busy_poll_us is None else f"busy poll {busy_poll_us} us"
            )
            print(
                f"{case} ({settings}): {median:.2f}x the bound, the median of {rounds} round(s):"
                f" {verdict}",
                file=sys.stderr,
            )


def report_goal(result: CaseResult, backend_floor: CaseResult, call: CaseResult) -> float:
    """Print on stderr how `result`'s p50 compares with issue 4's bound; return the ratio.

    The bound: 1.5 x the backend floor's p50 plus one gRPC call's (`lock_unary_echo`) p50. The
    line also gives the service's CPU per cycle, when known.
    """
    bound = 1.5 * backend_floor.p50_ms + call.p50_ms
    cpu = "" if result.server_cpu_us is None else f", service CPU {result.server_cpu_us:.0f} µs"
    print(
        f"{result.case}: p50 {result.p50_ms:.3f} ms against the bound 1.5 x"
        f" {backend_floor.p50_ms:.3f} + {call.p50_ms:.3f} = {bound:.3f} ms"
        f" ({result.p50_ms / bound:.2f}x){cpu}",
        file=sys.stderr,
    )
    return result.p50_ms / bound


async def zookeeper_cases(servers: Backends, options: BenchOptions) -> list[Comparison]:
    assert servers.zookeeper_hosts is not None
    hosts = servers.zookeeper_hosts
    async with lock_service("zookeeper", servers) as (endpoint, server):
        threads = await kazoo_thread_floor(hosts, options)
        floor = await zookeeper_floor(hosts, options)
        ours = await acquire_release("lock_acquire_release_zookeeper", endpoint, server, options)
        peer = await kazoo_lock_uncontended(hosts, options)
    return [Comparison(floor, threads), Comparison(ours, floor), Comparison(peer, floor)]


if __name__ == "__main__":
    sys.exit(run(__doc__ or "", bench))
