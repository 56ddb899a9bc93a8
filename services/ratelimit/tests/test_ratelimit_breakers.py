import asyncio
import uuid

import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2 as common_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from tessera.client.ratelimit import CircuitBreakerState, RateLimiter
from tessera.core import ValidationError

OPEN_S = 0.5  # the `target` breaker's open_s in configs/tessera_extensions.yaml


async def report(
    limiter: RateLimiter, target: dict[str, str], *, success: bool, latency_s: float = 0.0
) -> CircuitBreakerState:
    result = await limiter.report_outcome("api", target, success=success, latency_s=latency_s)
    assert result.adaptive is None
    assert result.circuit_breaker is not None
    return result.circuit_breaker


async def test_ratelimit_breaker_state_is_shared_by_two_replicas(start_ratelimit) -> None:
    async with (
        start_ratelimit() as (first, _),
        start_ratelimit() as (second, _),
        RateLimiter.connect(first.server.address) as a,
        RateLimiter.connect(second.server.address) as b,
    ):
        target = {"target": uuid.uuid4().hex}
        assert await b.check("api", [target])
        states = []
        for success in (True, False, True, False):
            states.append(await report(a, target, success=success, latency_s=0.01))
        # 2 bad of 4 (min_calls 4) reaches the 0.5 ratio on the fourth outcome only.
        assert [(s.state, s.calls, s.bad_calls) for s in states[:3]] == [
            ("closed", 1, 0),
            ("closed", 2, 1),
            ("closed", 3, 1),
        ]
        assert states[3].state == "open"
        denied = await b.check("api", [target])
        assert not denied
        decision = denied.decisions[0]
        assert decision.reason == "circuit open"
        assert decision.circuit_breaker is not None
        assert decision.circuit_breaker.state == "open"
        assert decision.circuit_breaker.strategy == "error_ratio"
        assert 0 < decision.retry_after_s <= OPEN_S

        await asyncio.sleep(decision.retry_after_s + 0.05)
        # Half-open: two probe slots across both replicas, then denials.
        probes = [await b.check("api", [target]), await a.check("api", [target])]
        assert all(probes)
        assert [p.decisions[0].reason for p in probes] == ["circuit half-open"] * 2
        third = await b.check("api", [target])
        assert not third
        assert third.decisions[0].reason == "circuit half-open"
        assert (await report(a, target, success=True)).state == "half_open"
        assert (await report(b, target, success=True)).state == "closed"
        closed = await a.check("api", [target])
        assert closed
        assert closed.decisions[0].circuit_breaker is not None
        assert closed.decisions[0].circuit_breaker.calls == 0


async def test_ratelimit_breaker_failed_probe_opens_again_and_peek_takes_no_slot(
    start_ratelimit,
) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        target = {"target": uuid.uuid4().hex}
        for _ in range(4):
            await report(limiter, target, success=False)
        await asyncio.sleep(OPEN_S + 0.05)
        for _ in range(3):
            peeked = await limiter.peek("api", [target])
            assert peeked
            assert peeked.decisions[0].reason == "circuit half-open"
        assert await limiter.check("api", [target])
        assert await limiter.check("api", [target])
        assert not await limiter.check("api", [target])
        assert (await report(limiter, target, success=False)).state == "open"
        assert (await limiter.explain("api", target)).decision.reason == "circuit open"


async def test_ratelimit_slow_call_ratio_breaker_counts_slow_calls(start_ratelimit) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        target = {"slow_target": uuid.uuid4().hex}
        fast = await report(limiter, target, success=False, latency_s=0.01)
        assert (fast.state, fast.bad_calls) == ("closed", 0)
        slow = await report(limiter, target, success=True, latency_s=0.2)
        assert slow.state == "open"
        assert slow.strategy == "slow_call_ratio"
        assert not await limiter.check("api", [target])


async def test_ratelimit_error_count_breaker_denies_before_the_rate_limit_counts(
    start_ratelimit,
) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        flaky = {"flaky": uuid.uuid4().hex}
        first = await limiter.check("api", [flaky])
        assert first.decisions[0].reason == "within limit"
        assert first.decisions[0].remaining == 2
        assert (await report(limiter, flaky, success=False)).state == "closed"
        assert (await report(limiter, flaky, success=False)).state == "open"
        for _ in range(3):
            assert not await limiter.check("api", [flaky])
        explanation = await limiter.explain("api", flaky)
        assert explanation.decision.reason == "circuit open"
        assert any("error_count circuit breaker" in step for step in explanation.steps)
        # Reset forgets the breaker too; the denied checks counted no hit.
        assert await limiter.reset("api", [flaky]) == 2
        again = await limiter.check("api", [flaky])
        assert again.decisions[0].circuit_breaker is not None
        assert again.decisions[0].circuit_breaker.state == "closed"
        assert again.decisions[0].remaining == 2


async def test_ratelimit_envoy_api_answers_over_limit_while_a_breaker_is_open(
    start_ratelimit,
) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        value = uuid.uuid4().hex
        for _ in range(2):
            await limiter.report_outcome("api", {"flaky": value}, success=False)
        stub = rls_pb2_grpc.RateLimitServiceStub(running.channel)
        entry = common_pb2.RateLimitDescriptor.Entry(key="flaky", value=value)
        request = rls_pb2.RateLimitRequest(
            domain="api", descriptors=[common_pb2.RateLimitDescriptor(entries=[entry])]
        )
        response = await stub.ShouldRateLimit(request)
        assert response.overall_code == rls_pb2.RateLimitResponse.OVER_LIMIT


async def test_ratelimit_report_outcome_rejects_targets_without_breakers(start_ratelimit) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        with pytest.raises(ValidationError) as raised:
            await limiter.report_outcome("api", {"user": "u"}, success=True)
        assert [v.field for v in raised.value.violations] == ["target"]
        with pytest.raises(ValidationError) as raised:
            await limiter.report_outcome("api", {"target": "t"}, success=True, latency_s=-1)
        assert [v.field for v in raised.value.violations] == ["latency"]
        with pytest.raises(ValidationError) as raised:
            await limiter.report_outcome("api", {}, success=True)
        assert [v.field for v in raised.value.violations] == ["target[0].entries"]
