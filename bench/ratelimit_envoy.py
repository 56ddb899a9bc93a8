"""Envoy's ShouldRateLimit and Tessera's batched Check against the gRPC floor on the same server.

Usage: ``python bench/ratelimit_envoy.py [--duration S] [--warmup S] [--concurrency N] [--json]
[--target HOST:PORT] [--smoke]``

Cases, measured in this order in the same run, on one rate-limit server with one client:

- ``ratelimit_unary_echo`` (floor): Diagnostics.Echo on the rate-limit server: one gRPC call
  through the server kit, no Redis.
- ``should_rate_limit_1``: ``envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`` with
  one descriptor matching a fixed-window rule (counted in Redis, never over its limit), compared
  with the floor. Goal (issue 5): ratio >= 0.8.
- ``check_100_decisions``: ``tessera.ratelimit.v1.RateLimiter/Check`` with 100 descriptors a call
  (one Redis round trip), counted in decisions per second. Goal: >= 100,000 decisions/s.

The script starts etcd and Redis (embedded binaries) and the service (``python -m
tessera.ratelimit``) in child processes, with the rule file written to a temporary directory.
With ``--target`` it measures that service, which must serve the ``bench`` domain below.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import grpc
from envoy.extensions.common.ratelimit.v3 import (  # type: ignore[import-untyped]  # no stubs
    ratelimit_pb2 as common_pb2,
)
from envoy.service.ratelimit.v3 import (  # type: ignore[import-untyped]  # xds-protos: no stubs
    rls_pb2,
    rls_pb2_grpc,
)
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

from tessera.core.embedded import EtcdServer, RedisServer
from tessera.proto.ratelimit.v1 import ratelimit_pb2 as pb
from tessera.proto.ratelimit.v1 import ratelimit_pb2_grpc

#: The rules the benchmark calls: limits no run can reach, so every call is counted and OK.
RULES = """\
domain: bench
descriptors:
  - key: client
    rate_limit:
      unit: second
      requests_per_unit: 1000000000
"""
BATCH = 100


class OverLimitError(RuntimeError):
    """A call the benchmark expects to be admitted was not."""


async def decisions(
    endpoint: Endpoint, server: ServerHandle | None, options: BenchOptions
) -> tuple[CaseResult, CaseResult]:
    async with grpc.aio.insecure_channel(str(endpoint)) as channel:
        envoy = rls_pb2_grpc.RateLimitServiceStub(channel)
        tessera = ratelimit_pb2_grpc.RateLimiterStub(channel)
        one = rls_pb2.RateLimitRequest(
            domain="bench",
            descriptors=[
                common_pb2.RateLimitDescriptor(
                    entries=[common_pb2.RateLimitDescriptor.Entry(key="client", value="c1")]
                )
            ],
        )
        batch = pb.CheckRequest(
            domain="bench",
            descriptors=[
                pb.Descriptor(entries=[pb.Entry(key="client", value=uuid.uuid4().hex)])
                for _ in range(BATCH)
            ],
        )

        async def should_rate_limit() -> None:
            response = await envoy.ShouldRateLimit(one)
            if response.overall_code != rls_pb2.RateLimitResponse.OK:
                raise OverLimitError(str(response))

        async def check_batch() -> None:
            response = await tessera.Check(batch)
            if response.overall_code != pb.CODE_OK:
                raise OverLimitError(str(response.decisions[0]))

        single = await measure("should_rate_limit_1", should_rate_limit, options, server=server)
        many = await measure(
            "check_100_decisions", check_batch, options, units_per_op=BATCH, server=server
        )
        return single, many


@asynccontextmanager
async def ratelimit_stack(rules: str = RULES) -> AsyncIterator[tuple[Endpoint, ServerHandle]]:
    """Start etcd, Redis and the rate-limit service serving `rules` (one domain's YAML)."""
    async with AsyncExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tessera-rl-")))
        etcd = await asyncio.to_thread(EtcdServer(directory / "etcd").start)
        stack.callback(etcd.stop)
        redis = await asyncio.to_thread(RedisServer(directory / "redis").start)
        stack.callback(redis.stop)
        (directory / "rules").mkdir()
        (directory / "rules" / "bench.yaml").write_text(rules)
        endpoint = Endpoint("127.0.0.1", free_port())
        env = {
            "TESSERA_PORT": str(endpoint.port),
            "TESSERA_METRICS_PORT": str(free_port()),
            "TESSERA_ETCD_ENDPOINTS": etcd.endpoint,
            "TESSERA_REDIS_URL": redis.url,
            "TESSERA_RATELIMIT_CONFIG_DIR": str(directory / "rules"),
            "TESSERA_LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join(sys.path),
        }
        server = await stack.enter_async_context(
            server_process([sys.executable, "-m", "tessera.ratelimit"], endpoint, env=env)
        )
        yield endpoint, server


async def bench(options: BenchOptions) -> list[Comparison]:
    if options.target is not None:
        async with echo_client(options.target) as echo:
            floor = await measure("ratelimit_unary_echo", echo.echo, options)
        single, many = await decisions(options.target, None, options)
        return [Comparison(floor), Comparison(single, floor), Comparison(many)]
    async with ratelimit_stack() as (endpoint, server):
        async with echo_client(endpoint, server) as echo:
            floor = await measure("ratelimit_unary_echo", echo.echo, options, server=server)
        single, many = await decisions(endpoint, server, options)
        return [Comparison(floor), Comparison(single, floor), Comparison(many)]


if __name__ == "__main__":
    sys.exit(run(__doc__ or "", bench))
