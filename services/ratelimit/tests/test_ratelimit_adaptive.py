import asyncio
import uuid

import pytest

from tessera.client.ratelimit import AdaptiveLimitState, RateLimiter
from tessera.core import ValidationError
from tessera.ratelimit import parse_domain

COOLDOWN_S = 0.3  # the `backend` rule's cooldown_s in configs/tessera_extensions.yaml


async def report(
    limiter: RateLimiter, target: dict[str, str], *, success: bool, latency_s: float
) -> AdaptiveLimitState:
    result = await limiter.report_outcome("api", target, success=success, latency_s=latency_s)
    assert result.circuit_breaker is None
    assert result.adaptive is not None
    return result.adaptive


async def test_ratelimit_aimd_limit_grows_halves_and_stays_in_bounds(start_ratelimit) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        backend = {"backend": uuid.uuid4().hex}
        # Before any outcome the initial limit (4 in flight) applies, not requests_per_unit.
        results = [await limiter.check("api", [backend]) for _ in range(5)]
        assert [bool(r) for r in results] == [True] * 4 + [False]
        assert results[4].decisions[0].limit == 4
        assert results[4].decisions[0].adaptive is not None
        assert results[4].decisions[0].adaptive.samples == 0

        limits = [
            (await report(limiter, backend, success=True, latency_s=0.01)).limit for _ in range(20)
        ]
        assert limits[:3] == [5, 5, 6]  # 4 + 4/4, + 4/5, + 4/5.8 (floored)
        assert limits == sorted(limits)
        assert limits[-1] == 10  # max_limit
        # The grown limit is in force: the held leases leave 6 more.
        more = [await limiter.check("api", [backend]) for _ in range(7)]
        assert [bool(r) for r in more] == [True] * 6 + [False]

        failed = await report(limiter, backend, success=False, latency_s=0.01)
        assert failed.limit == 5
        assert failed.error_ratio == pytest.approx(0.5)
        # A second bad outcome within the cooldown does not decrease again.
        assert (await report(limiter, backend, success=False, latency_s=0.01)).limit == 5
        for expected in (2, 2):  # 5 * 0.5 floors to 2; min_limit holds it there
            await asyncio.sleep(COOLDOWN_S + 0.05)
            assert (await report(limiter, backend, success=True, latency_s=0.5)).limit == expected
        explanation = await limiter.explain("api", backend)
        assert explanation.decision.adaptive is not None
        assert explanation.decision.adaptive.strategy == "aimd"
        assert explanation.decision.adaptive.limit == 2
        assert explanation.decision.adaptive.samples == 24
        assert explanation.decision.adaptive.latency_s > 0.1
        assert any("aimd adaptive limit" in step for step in explanation.steps)


async def test_ratelimit_gradient_limit_follows_latency_and_errors(start_ratelimit) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        target = {"gradient": uuid.uuid4().hex}
        steady = [
            (await report(limiter, target, success=True, latency_s=0.01)).limit for _ in range(15)
        ]
        assert steady == sorted(steady)
        assert steady[0] > 50
        assert steady[-1] == 100
        slow = [
            (await report(limiter, target, success=True, latency_s=1.0)).limit for _ in range(3)
        ]
        assert slow == sorted(slow, reverse=True)
        assert slow[-1] < 100
        failing = [
            (await report(limiter, target, success=False, latency_s=0.01)).limit for _ in range(30)
        ]
        assert failing[-1] == 10  # min_limit


async def test_ratelimit_adaptive_limit_is_shared_by_replicas(start_ratelimit) -> None:
    async with (
        start_ratelimit() as (first, _),
        start_ratelimit(ratelimit_adaptive_refresh_s=0.1) as (second, _),
        RateLimiter.connect(first.server.address) as a,
        RateLimiter.connect(second.server.address) as b,
    ):
        target = {"gradient": uuid.uuid4().hex}
        before = (await b.peek("api", [target])).decisions[0]
        assert before.limit == 50
        for _ in range(5):
            state = await report(a, target, success=True, latency_s=0.01)
        await asyncio.sleep(0.15)
        after = (await b.peek("api", [target])).decisions[0]
        assert after.limit == state.limit > 50
        assert after.adaptive is not None
        assert after.adaptive.samples == 5


@pytest.mark.parametrize(
    ("adaptive", "path"),
    [
        ("{strategy: pid, min_limit: 1, max_limit: 2}", "adaptive.strategy"),
        ("{strategy: gradient, min_limit: 0, max_limit: 2}", "adaptive.min_limit"),
        ("{strategy: gradient, min_limit: 5, max_limit: 2}", "adaptive.max_limit"),
        (
            "{strategy: gradient, min_limit: 1, max_limit: 2, initial_limit: 3}",
            "adaptive.initial_limit",
        ),
        ("{strategy: aimd, min_limit: 1, max_limit: 2}", "adaptive.target_latency_s"),
        (
            "{strategy: aimd, min_limit: 1, max_limit: 2, target_latency_s: 1, decrease: 1}",
            "adaptive.decrease",
        ),
        (
            "{strategy: gradient, min_limit: 1, max_limit: 2, target_latency_s: 1}",
            "adaptive.target_latency_s",
        ),
        ("{strategy: gradient, min_limit: 1, max_limit: 2, smoothing: 0}", "adaptive.smoothing"),
    ],
)
def test_ratelimit_adaptive_config_rejects_bad_fields_by_path(adaptive: str, path: str) -> None:
    text = (
        "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}"
        f"\n    adaptive: {adaptive}\n"
    )
    with pytest.raises(ValidationError) as raised:
        parse_domain(text, algorithms={"fixed_window"})
    assert [v.field for v in raised.value.violations] == [f"descriptors[0].{path}"]


def test_ratelimit_adaptive_config_needs_a_rate_limit() -> None:
    text = (
        "domain: d\ndescriptors:\n  - key: k\n"
        "    adaptive: {strategy: gradient, min_limit: 1, max_limit: 2}\n"
    )
    with pytest.raises(ValidationError) as raised:
        parse_domain(text, algorithms={"fixed_window"})
    assert [v.field for v in raised.value.violations] == ["descriptors[0].adaptive"]
