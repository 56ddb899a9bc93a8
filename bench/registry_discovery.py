"""Discovery on one registry process: watch propagation to 1,000 watchers, List of 10,000.

Usage: ``python bench/registry_discovery.py [--duration S] [--warmup S] [--json]
[--target HOST:PORT] [--smoke]``

Starts etcd and one registry (as ``bench/registry_register.py`` does), then from this process:

- ``watch_propagation_1000``: 1,000 Watch streams (on 10 channels) follow one service; one
  operation drains or un-drains an instance (SetStatus) and ends when all 1,000 watchers have
  received that revision, so its latency is write + fan-out (goal: p99 <= 100 ms). Baseline:
  ``unary_echo``, the floor of one call on the same server. ``ops_per_s`` counts operations.
- ``list_10000``: List of a service with 10,000 instances (served from the registry's memory).
  Baseline ``etcd_get_prefix_10000``: reading the same 10,000 keys straight from etcd, the raw
  backend operation a registry without a view would do per List.

One worker per case (``--concurrency`` is ignored): operations must not overlap to be timed.
With ``--target`` the cases run against that registry without baselines; the 10,000 instances
are then registered through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from aetcd import rpc
from floor import echo_client
from harness import BenchOptions, CaseResult, Comparison, Endpoint, ServerHandle, measure, run
from registry_register import NAMESPACE, registry

from tessera.core.etcd import EtcdClient
from tessera.proto.registry.v1 import registry_pb2, registry_pb2_grpc

WATCHERS = 1000
CHANNELS = 10
LISTED = 10_000
_BATCH = 100  # puts per etcd transaction (etcd allows 128 by default)


class Fanout:
    """Counts, per revision, how many watchers have received it."""

    def __init__(self) -> None:
        self.seen: Counter[int] = Counter()
        self.changed = asyncio.Condition()

    async def follow(self, stub: registry_pb2_grpc.RegistryAsyncStub, ready: asyncio.Event) -> None:
        request = registry_pb2.WatchRequest(namespace=NAMESPACE, service="watched")
        async for response in stub.Watch(request):
            if response.reset:
                ready.set()
                continue
            self.seen[response.revision] += 1
            if self.seen[response.revision] == WATCHERS:
                async with self.changed:
                    self.changed.notify_all()

    async def wait_all(self, revision: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.seen[revision] >= WATCHERS)
        del self.seen[revision]


async def _instance(stub: registry_pb2_grpc.RegistryAsyncStub, service: str, n: int) -> None:
    instance = registry_pb2.Instance(
        namespace=NAMESPACE, service=service, id=f"i{n}", host="10.0.0.1", port=8000 + n % 1000
    )
    await stub.Register(registry_pb2.RegisterRequest(instance=instance))


@contextlib.asynccontextmanager
async def channels(endpoint: Endpoint) -> AsyncIterator[list[grpc.aio.Channel]]:
    opened = [grpc.aio.insecure_channel(str(endpoint)) for _ in range(CHANNELS)]
    try:
        yield opened
    finally:
        for channel in opened:
            await channel.close()


async def watch_case(
    opened: list[grpc.aio.Channel], options: BenchOptions, server: ServerHandle | None
) -> CaseResult:
    stubs = [registry_pb2_grpc.RegistryStub(channel) for channel in opened]
    await _instance(stubs[0], "watched", 0)
    fanout = Fanout()
    ready = [asyncio.Event() for _ in range(WATCHERS)]
    tasks = [
        asyncio.create_task(fanout.follow(stubs[n % CHANNELS], ready[n])) for n in range(WATCHERS)
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in ready)), 60)
        ref = registry_pb2.InstanceRef(namespace=NAMESPACE, service="watched", id="i0")
        statuses = [registry_pb2.SERVING_STATUS_DRAINING, registry_pb2.SERVING_STATUS_SERVING]
        flips = 0

        async def flip() -> None:
            nonlocal flips
            flips += 1
            request = registry_pb2.SetStatusRequest(instance=ref, status=statuses[flips % 2])
            reply = await stubs[0].SetStatus(request)
            await fanout.wait_all(reply.revision)

        return await measure("watch_propagation_1000", flip, options, server=server)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


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
    async with channels(endpoint) as opened, echo_client(endpoint, server) as echo:
        floor = None
        if server is not None:
            floor = await measure("unary_echo", echo.echo, options, server=server)
        watched = await watch_case(opened, options, server)
        stub = registry_pb2_grpc.RegistryStub(opened[0])
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
