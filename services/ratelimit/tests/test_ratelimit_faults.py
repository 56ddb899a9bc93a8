import asyncio
import statistics
import time
import uuid

import grpc
import pytest

from tessera.core.embedded import RedisServer
from tessera.proto.ratelimit.v1 import ratelimit_pb2 as pb
from tessera.proto.ratelimit.v1 import ratelimit_pb2_grpc
from tessera.testing import ServerFactory

UNAVAILABLE_CLOSED = "redis unavailable (failure_mode closed)"


def check_request(key: str, value: str, domain: str = "api") -> pb.CheckRequest:
    return pb.CheckRequest(
        domain=domain, descriptors=[pb.Descriptor(entries=[pb.Entry(key=key, value=value)])]
    )


async def test_ratelimit_redis_restart_fails_fast_then_recovers(
    start_ratelimit, redis_factory: ServerFactory[RedisServer]
) -> None:
    redis = await asyncio.to_thread(redis_factory)
    async with start_ratelimit(redis_url=redis.url) as (running, _):
        stub = ratelimit_pb2_grpc.RateLimiterStub(running.channel)
        request = check_request("tenant", uuid.uuid4().hex)
        assert (await stub.Check(request)).decisions[0].reason == "within limit"
        await asyncio.to_thread(redis.kill)

        latencies, reasons = [], set()
        until = time.monotonic() + 1.0
        while time.monotonic() < until:  # a closed loop of calls: load while Redis is down
            started = time.perf_counter()
            decision = (await stub.Check(request)).decisions[0]
            latencies.append(time.perf_counter() - started)
            reasons.add(decision.reason)
            assert decision.code == pb.CODE_OVER_LIMIT  # the domain fails closed
        assert reasons == {UNAVAILABLE_CLOSED}
        assert statistics.median(latencies) < 0.005, statistics.median(latencies)
        assert max(latencies) < 0.5, max(latencies)  # never a hang on a dead Redis

        await asyncio.to_thread(redis.restart)
        back = time.monotonic()
        while (await stub.Check(request)).decisions[0].reason == UNAVAILABLE_CLOSED:  # noqa: ASYNC110 - polls a server
            await asyncio.sleep(0.01)
        assert time.monotonic() - back < 1.0


@pytest.mark.parametrize(
    ("domain", "key", "limit"),
    [
        ("edge_proxy_per_ip", "remote_address", 10),  # fixed_window
        ("api", "tenant", 3),  # token_bucket
        ("api", "user", 2),  # sliding_window
        ("api", "ip", 2),  # gcra
        ("api", "upload", 2),  # leaky_bucket
        ("api", "job", 2),  # concurrency (no lease released)
    ],
)
async def test_ratelimit_two_replicas_never_admit_more_than_the_limit(
    start_ratelimit, domain: str, key: str, limit: int
) -> None:
    async with start_ratelimit() as (one, _), start_ratelimit() as (two, _):
        stubs = [ratelimit_pb2_grpc.RateLimiterStub(s.channel) for s in (one, two)]
        request = check_request(key, uuid.uuid4().hex, domain)
        responses = await asyncio.gather(*(stubs[i % 2].Check(request) for i in range(40)))
        admitted = sum(r.overall_code == pb.CODE_OK for r in responses)
        assert admitted == limit


async def test_ratelimit_breaker_targets_get_the_failure_policy_while_redis_is_down(
    start_ratelimit, redis_factory: ServerFactory[RedisServer]
) -> None:
    redis = await asyncio.to_thread(redis_factory)
    async with start_ratelimit(redis_url=redis.url) as (running, _):
        stub = ratelimit_pb2_grpc.RateLimiterStub(running.channel)
        target = pb.Descriptor(entries=[pb.Entry(key="target", value=uuid.uuid4().hex)])
        request = pb.CheckRequest(domain="api", descriptors=[target])
        decision = (await stub.Check(request)).decisions[0]
        assert decision.reason == "circuit closed"
        await asyncio.to_thread(redis.kill)
        started = time.perf_counter()
        decision = (await stub.Check(request)).decisions[0]
        assert time.perf_counter() - started < 0.5
        assert decision.reason == UNAVAILABLE_CLOSED
        assert decision.code == pb.CODE_OVER_LIMIT
        outcome = pb.ReportOutcomeRequest(domain="api", target=target, success=False)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ReportOutcome(outcome)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
