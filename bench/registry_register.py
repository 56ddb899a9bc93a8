"""Registrations and resolves per second on one registry process, against the server-kit floor.

Usage: ``python bench/registry_register.py [--duration S] [--warmup S] [--concurrency N]
[--json] [--target HOST:PORT] [--smoke]``

Starts etcd (``tessera.core.embedded``, data in a temporary directory) and one registry
(``python -m tessera.registry``) in child processes, then measures from this process, each case
right after the floor (Diagnostics.Echo through the same registry server, ``bench/floor.py``):

- ``register``: Register of a new persistent instance per call (one etcd write each, and the
  wait until the registry's view has applied it); goal >= 5,000/s.
- ``register_batch``: RegisterBatch of ``BATCH`` new persistent instances per call from
  ``BATCH_WORKERS`` workers, counted in registrations (the same etcd writes and view wait as
  Register, without one gRPC call each); goal >= 5,000/s.
- ``resolve``: Resolve with ``round_robin`` among 10 instances (served from memory).
- ``keepalive_beats``: heartbeats of 1,000 ephemeral instances per KeepAlive message on one
  stream, counted per instance; instances one process keeps alive with 5 s heartbeats are
  5 x this rate (goal: >= 100,000 live instances, i.e. >= 20,000 beats/s). The baseline here is
  the floor of one unary call, so the ratio is instance-beats per Echo.

With ``--target`` both cases run against that registry and carry no baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
import tempfile
from collections.abc import AsyncIterator

import grpc
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

from tessera.core.embedded import EtcdServer
from tessera.proto.registry.v1 import registry_pb2, registry_pb2_grpc

NAMESPACE = "bench"
BEATS_PER_MESSAGE = 1000
BATCH = 100
BATCH_WORKERS = 4


@contextlib.asynccontextmanager
async def registry() -> AsyncIterator[tuple[ServerHandle, str]]:
    """Run etcd and one registry process; yield the registry and etcd's endpoint."""
    with tempfile.TemporaryDirectory(prefix="tessera-bench-etcd-") as data:
        etcd = EtcdServer(data)
        await asyncio.to_thread(etcd.start)
        try:
            endpoint = Endpoint("127.0.0.1", free_port())
            env = {
                "TESSERA_PORT": str(endpoint.port),
                "TESSERA_METRICS_PORT": "0",
                "TESSERA_ETCD_ENDPOINTS": etcd.endpoint,
                "TESSERA_LOG_LEVEL": "WARNING",
                # No Redis here: the background jobs are not what is measured.
                "TESSERA_RUN_JOBS": "false",
            }
            argv = [sys.executable, "-m", "tessera.registry"]
            async with server_process(argv, endpoint, env=env) as server:
                yield server, etcd.endpoint
        finally:
            await asyncio.to_thread(etcd.stop)


async def measure_cases(
    endpoint: Endpoint, server: ServerHandle | None, options: BenchOptions
) -> list[Comparison]:
    async with (
        grpc.aio.insecure_channel(str(endpoint)) as channel,
        echo_client(endpoint, server) as echo,
    ):
        stub = registry_pb2_grpc.RegistryStub(channel)
        ids = itertools.count()
        run_id = id(channel)

        async def register() -> None:
            instance = registry_pb2.Instance(
                namespace=NAMESPACE,
                service=f"svc-{run_id}",
                id=f"i{next(ids)}",
                host="10.0.0.1",
                port=8080,
            )
            await stub.Register(registry_pb2.RegisterRequest(instance=instance))

        async def register_batch() -> None:
            request = registry_pb2.RegisterBatchRequest(
                registrations=[
                    registry_pb2.RegisterRequest(
                        instance=registry_pb2.Instance(
                            namespace=NAMESPACE, service=f"batch-{run_id}", id=f"b{next(ids)}",
                            host="10.0.0.1", port=8080,
                        )
                    )
                    for _ in range(BATCH)
                ]
            )  # fmt: skip
            await stub.RegisterBatch(request)

        for n in range(10):
            await stub.Register(
                registry_pb2.RegisterRequest(
                    instance=registry_pb2.Instance(
                        namespace=NAMESPACE, service="resolved", id=f"r{n}", host="10.0.0.2",
                        port=9000 + n,
                    )
                )
            )  # fmt: skip
        resolve_request = registry_pb2.ResolveRequest(namespace=NAMESPACE, service="resolved")

        async def resolve() -> None:
            await stub.Resolve(resolve_request)

        refs = [
            registry_pb2.InstanceRef(namespace=NAMESPACE, service="kept", id=f"k{n}")
            for n in range(BEATS_PER_MESSAGE)
        ]
        beat = registry_pb2.KeepAliveRequest(instances=refs)
        stream = stub.KeepAlive()

        async def register_kept() -> None:
            # Right before their case: registered earlier, they would go unhealthy and be
            # deleted without beats while the other cases run.
            registrations = [
                registry_pb2.RegisterRequest(
                    instance=registry_pb2.Instance(
                        namespace=NAMESPACE, service="kept", id=ref.id, host="10.0.0.3",
                        port=7000, ephemeral=True,
                    )
                )
                for ref in refs
            ]  # fmt: skip
            await stub.RegisterBatch(registry_pb2.RegisterBatchRequest(registrations=registrations))

        async def keepalive() -> None:
            await stream.write(beat)
            reply = await stream.read()
            if not isinstance(reply, registry_pb2.KeepAliveResponse) or reply.unknown:
                raise RuntimeError(f"the registry lost kept-alive instances: {reply}")

        # One stream carries one beat at a time: its case runs with one worker.
        single = BenchOptions(
            duration_s=options.duration_s, warmup_s=options.warmup_s, concurrency=1,
            json=options.json, target=options.target, smoke=options.smoke,
        )  # fmt: skip
        batched = BenchOptions(
            duration_s=options.duration_s, warmup_s=options.warmup_s,
            concurrency=min(options.concurrency, BATCH_WORKERS), json=options.json,
            target=options.target, smoke=options.smoke,
        )  # fmt: skip
        cases = (
            ("register", register, options, 1, None),
            ("register_batch", register_batch, batched, BATCH, None),
            ("resolve", resolve, options, 1, None),
            ("keepalive_beats", keepalive, single, BEATS_PER_MESSAGE, register_kept),
        )
        comparisons = []
        for case, operation, case_options, units, setup in cases:
            floor: CaseResult | None = None
            if server is not None:
                floor = await measure("unary_echo", echo.echo, case_options, server=server)
            if setup is not None:
                await setup()
            result = await measure(case, operation, case_options, units_per_op=units, server=server)
            comparisons.append(Comparison(result, floor))
        stream.cancel()
        return comparisons


async def bench(options: BenchOptions) -> list[Comparison]:
    if options.target is not None:
        return await measure_cases(options.target, None, options)
    async with registry() as (server, _):
        return await measure_cases(server.endpoint, server, options)


if __name__ == "__main__":
    sys.exit(run(__doc__ or "", bench))
