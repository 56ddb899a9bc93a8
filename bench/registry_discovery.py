"""Discovery on one registry process: watch propagation to 1,000 watchers, List of 10,000.

Usage: ``python bench/registry_discovery.py [--duration S] [--warmup S] [--json]
[--target HOST:PORT] [--smoke]``

Starts etcd and one registry (as ``bench/registry_register.py`` does), then from this process:

- ``watch_propagation_1000``: 1,000 Watch streams follow one service, in
  ``WATCHER_PROCESSES`` client processes (``bench/_registry_watchers.py``, 3 channels each;
  environment variable ``TESSERA_BENCH_WATCHER_PROCESSES``, default 1: on 2 cores, more
  processes cost more client CPU per message, not less), apart from this timing process; one
  operation drains or un-drains an instance (SetStatus) and ends when every watcher process has
  reported that all its watchers received that revision, so its latency is write + fan-out +
  the report over a pipe (goal: p99 <= 100 ms). The watcher processes' CPU per operation is
  printed on stderr. Baseline: ``unary_echo``, the floor of one call on the same server.
  ``ops_per_s`` counts operations.
- ``list_10000``: List of a service with 10,000 instances (served from the registry's memory).
  Baseline ``etcd_get_prefix_10000``: reading the same 10,000 keys straight from etcd, the raw
  backend operation a registry without a view would do per List.

One worker per case (``--concurrency`` is ignored): operations must not overlap to be timed.
With ``--target`` the cases run against that registry without baselines; the 10,000 instances
are then registered through it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import psutil
from aetcd import rpc
from floor import echo_client
from harness import BenchOptions, CaseResult, Comparison, Endpoint, ServerHandle, measure, run
from registry_register import NAMESPACE, registry

from tessera.core.etcd import EtcdClient
from tessera.proto.registry.v1 import registry_pb2, registry_pb2_grpc

WATCHERS = 1000
#: Client processes the watchers are spread over, and channels (connections) in each.
WATCHER_PROCESSES = int(os.environ.get("TESSERA_BENCH_WATCHER_PROCESSES", "1"))
CHANNELS_PER_PROCESS = 3
_WATCHERS = Path(__file__).with_name("_registry_watchers.py")
LISTED = 10_000
_BATCH = 100  # puts per etcd transaction (etcd allows 128 by default)


class WatcherProcesses:
    """Watch streams run by ``bench/_registry_watchers.py`` child processes.

    ``wait_all(revision)`` returns once every process reported that all its streams have seen
    that revision.
    """

    def __init__(self) -> None:
        self._processes: list[asyncio.subprocess.Process] = []
        self._readers: list[asyncio.Task[None]] = []
        self._reported: Counter[int] = Counter()
        self._changed = asyncio.Condition()

    async def start(self, endpoint: Endpoint, service: str) -> None:
        """Start the processes and return once every stream has its snapshot."""
        per_process, extra = divmod(WATCHERS, WATCHER_PROCESSES)
        for n in range(WATCHER_PROCESSES):
            count = per_process + (1 if n < extra else 0)
            process = await asyncio.create_subprocess_exec(
                sys.executable, str(_WATCHERS), str(endpoint), NAMESPACE, service, str(count),
                str(CHANNELS_PER_PROCESS),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            self._processes.append(process)
        for process in self._processes:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            if line != b"ready\n":
                raise RuntimeError(f"a watcher process failed to start: {line!r}")
            self._readers.append(asyncio.create_task(self._read(process.stdout)))

    async def _read(self, stdout: asyncio.StreamReader) -> None:
        async for line in stdout:
            revision = int(line)
            self._reported[revision] += 1
            if self._reported[revision] == WATCHER_PROCESSES:
                async with self._changed:
                    self._changed.notify_all()

    async def wait_all(self, revision: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._reported[revision] >= WATCHER_PROCESSES)
        del self._reported[revision]

    def cpu_seconds(self) -> float:
        """User plus system CPU time the watcher processes have used so far."""
        total = 0.0
        for process in self._processes:
            times = psutil.Process(process.pid).cpu_times()
            total += times.user + times.system
        return total

    async def close(self) -> None:
        for process in self._processes:
            if process.stdin is not None:
                process.stdin.close()
        for process in self._processes:
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


async def _instance(stub: registry_pb2_grpc.RegistryAsyncStub, service: str, n: int) -> None:
    instance = registry_pb2.Instance(
        namespace=NAMESPACE, service=service, id=f"i{n}", host="10.0.0.1", port=8000 + n % 1000
    )
    await stub.Register(registry_pb2.RegisterRequest(instance=instance))


async def watch_case(
    stub: registry_pb2_grpc.RegistryAsyncStub,
    endpoint: Endpoint,
    options: BenchOptions,
    server: ServerHandle | None,
) -> CaseResult:
    await _instance(stub, "watched", 0)
    watchers = WatcherProcesses()
    try:
        await watchers.start(endpoint, "watched")
        ref = registry_pb2.InstanceRef(namespace=NAMESPACE, service="watched", id="i0")
        statuses = [registry_pb2.SERVING_STATUS_DRAINING, registry_pb2.SERVING_STATUS_SERVING]
        flips = 0

        async def flip() -> None:
            nonlocal flips
            flips += 1
            request = registry_pb2.SetStatusRequest(instance=ref, status=statuses[flips % 2])
            reply = await stub.SetStatus(request)
            await watchers.wait_all(reply.revision)

        cpu_start = watchers.cpu_seconds()
        result = await measure("watch_propagation_1000", flip, options, server=server)
        # CPU and operations both include the warm-up's.
        cpu_per_op = (watchers.cpu_seconds() - cpu_start) / (flips or 1)
        print(
            f"watch_propagation_1000: {WATCHER_PROCESSES} watcher processes used "
            f"{cpu_per_op * 1e3:.1f} ms of CPU per operation "
            f"({cpu_per_op * 1e6 / WATCHERS:.1f} µs per received message)",
            file=sys.stderr,
        )
        return result
    finally:
        await watchers.close()


def _transaction(request: Any) -> Callable[[Any], Awaitable[Any]]:
    def send(client: Any) -> Awaitable[Any]:
        return client.kvstub.Txn(request, metadata=client.metadata)  # type: ignore[no-any-return]

    return send


async def seed_list(stub: registry_pb2_grpc.RegistryAsyncStub, etcd_endpoint: str | None) -> None:
    if etcd_endpoint is None:
        for start in range(0, LISTED, 100):
            await asyncio.gather(*(_instance(stub, "listed", n) for n in range(start, start + 100)))
        return
    # Straight into etcd in transactions: the registry's view picks them up through its watch.
    async with EtcdClient([etcd_endpoint]) as etcd:
        for start in range(0, LISTED, _BATCH):
            ops = []
            for n in range(start, start + _BATCH):
                instance = registry_pb2.Instance(
                    namespace=NAMESPACE, service="listed", id=f"i{n}", host="10.0.0.1",
                    port=8000 + n % 1000, weight=1.0, status=registry_pb2.SERVING_STATUS_SERVING,
                    healthy=True,
                )  # fmt: skip
                key = f"/tessera/registry/instances/{NAMESPACE}/listed/i{n}".encode()
                put = rpc.PutRequest(key=key, value=instance.SerializeToString())
                ops.append(rpc.RequestOp(request_put=put))
            await etcd.execute(_transaction(rpc.TxnRequest(success=ops)), idempotent=False)
    request = registry_pb2.ListRequest(namespace=NAMESPACE, service="listed")
    for _ in range(200):
        if len((await stub.List(request)).service.instances) == LISTED:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the registry never listed all seeded instances")


async def list_case(
    stub: registry_pb2_grpc.RegistryAsyncStub,
    options: BenchOptions,
    server: ServerHandle | None,
    etcd_endpoint: str | None,
) -> Comparison:
    await seed_list(stub, etcd_endpoint)
    request = registry_pb2.ListRequest(namespace=NAMESPACE, service="listed")

    async def list_all() -> None:
        await stub.List(request)

    baseline = None
    if etcd_endpoint is not None:
        async with EtcdClient([etcd_endpoint]) as etcd:
            prefix = f"/tessera/registry/instances/{NAMESPACE}/listed/"

            async def get_prefix() -> None:
                await etcd.get_prefix(prefix)

            baseline = await measure("etcd_get_prefix_10000", get_prefix, options)
    return Comparison(await measure("list_10000", list_all, options, server=server), baseline)


async def measure_cases(
    endpoint: Endpoint,
    server: ServerHandle | None,
    etcd_endpoint: str | None,
    options: BenchOptions,
) -> list[Comparison]:
    async with (
        grpc.aio.insecure_channel(str(endpoint)) as channel,
        echo_client(endpoint, server) as echo,
    ):
        stub = registry_pb2_grpc.RegistryStub(channel)
        floor = None
        if server is not None:
            floor = await measure("unary_echo", echo.echo, options, server=server)
        watched = await watch_case(stub, endpoint, options, server)
        listed = await list_case(stub, options, server, etcd_endpoint)
        return [Comparison(watched, floor), listed]


async def bench(options: BenchOptions) -> list[Comparison]:
    options = BenchOptions(
        duration_s=options.duration_s, warmup_s=options.warmup_s, concurrency=1,
        json=options.json, target=options.target, smoke=options.smoke,
    )  # fmt: skip
    if options.target is not None:
        return await measure_cases(options.target, None, None, options)
    async with registry() as (server, etcd_endpoint):
        return await measure_cases(server.endpoint, server, etcd_endpoint, options)


if __name__ == "__main__":
    sys.exit(run(__doc__ or "", bench))
