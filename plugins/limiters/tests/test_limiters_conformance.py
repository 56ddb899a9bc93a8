import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from tessera.core import BackendError, ValidationError
from tessera.core.embedded import RedisServer
from tessera.core.plugins import LIMITERS, Limiter, Rate, load_plugins
from tessera.core.redis import connect_redis
from tessera.limiters import (
    Concurrency,
    Evaluation,
    FixedWindow,
    Gcra,
    LeakyBucket,
    LimitEvaluator,
    SlidingWindow,
    TokenBucket,
)
from tessera.testing.conformance.limiters import (
    BURST_CHECKS,
    CALENDAR_CHECKS,
    GRANT_CHECKS,
    LEASE_CHECKS,
    LIMITER_CHECKS,
    PACING_CHECKS,
    WEIGHTED_WINDOW_GRANT_CHECKS,
    WINDOW_GRANT_CHECKS,
    LimiterSubject,
)

ALGORITHMS = [
    "fixed_window",
    "sliding_window",
    "token_bucket",
    "gcra",
    "leaky_bucket",
    "concurrency",
]


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = connect_redis(redis_server.url)
    yield client
    await client.aclose()


@pytest.mark.parametrize("check", LIMITER_CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_limiters_conformance(
    algorithm: str, check: Callable[[LimiterSubject], Awaitable[None]], redis_client: Redis
) -> None:
    limiter: Limiter = load_plugins(LIMITERS).get(algorithm).create()
    await check(LimiterSubject(limiter, redis_client, counts_denied=algorithm == "fixed_window"))


@pytest.mark.parametrize("check", PACING_CHECKS, ids=lambda check: check.__name__)
async def test_limiters_leaky_bucket_pacing(
    check: Callable[[LimiterSubject], Awaitable[None]], redis_client: Redis
) -> None:
    await check(LimiterSubject(LeakyBucket(), redis_client))


@pytest.mark.parametrize("check", LEASE_CHECKS, ids=lambda check: check.__name__)
async def test_limiters_concurrency_leases(
    check: Callable[[LimiterSubject], Awaitable[None]], redis_client: Redis
) -> None:
    await check(LimiterSubject(Concurrency(), redis_client))


@pytest.mark.parametrize("check", GRANT_CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize(
    "algorithm", ["fixed_window", "sliding_window", "token_bucket", "gcra", "leaky_bucket"]
)
async def test_limiters_quota_grants(
    algorithm: str, check: Callable[[LimiterSubject], Awaitable[None]], redis_client: Redis
) -> None:
    limiter: Limiter = load_plugins(LIMITERS).get(algorithm).create()
    await check(LimiterSubject(limiter, redis_client, counts_denied=algorithm == "fixed_window"))


@pytest.mark.parametrize("check", WINDOW_GRANT_CHECKS, ids=lambda check: check.__name__)
async def test_limiters_fixed_window_grants_end_with_the_window(
    check: Callable[[LimiterSubject], Awaitable[None]], redis_client: Redis
) -> None:
    await check(LimiterSubject(FixedWindow(), redis_client, counts_denied=True))


@pytest.mark.parametrize("check", WEIGHTED_WINDOW_GRANT_CHECKS, ids=lambda check: check.__name__)
async def test_limiters_sliding_window_grants_weigh_until_their_window_is_gone(
    check: Callable[[LimiterSubject], Awaitable[None]], redis_client: Redis
) -> None:
    await check(LimiterSubject(SlidingWindow(), redis_client))


@pytest.mark.parametrize("check", BURST_CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("limiter", [TokenBucket(), Gcra()], ids=["token_bucket", "gcra"])
async def test_limiters_bursts(
    limiter: Limiter, check: Callable[[LimiterSubject], Awaitable[None]], redis_client: Redis
) -> None:
    await check(LimiterSubject(limiter, redis_client))


@pytest.mark.parametrize("check", CALENDAR_CHECKS, ids=lambda check: check.__name__)
async def test_limiters_fixed_window_calendar_alignment(
    check: Callable[[LimiterSubject], Awaitable[None]], redis_client: Redis
) -> None:
    await check(LimiterSubject(FixedWindow(), redis_client, counts_denied=True))


@pytest.mark.parametrize(
    ("algorithm", "rate", "field"),
    [
        (name, rate, field)
        for name in ("sliding_window", "leaky_bucket", "concurrency")
        for rate, field in (
            (Rate(1, 1.0, burst=2), "rate.burst"),
            (Rate(1, 86400.0, align="calendar"), "rate.align"),
        )
    ]
    + [("fixed_window", Rate(1, 1.0, burst=2), "rate.burst")],
)
def test_limiters_reject_extensions_they_do_not_have(
    algorithm: str, rate: Rate, field: str
) -> None:
    limiter: Limiter = load_plugins(LIMITERS).get(algorithm).create()
    with pytest.raises(ValidationError) as raised:
        limiter.arguments(rate, 1)
    assert [v.field for v in raised.value.violations] == [field]


async def test_limiters_release_through_an_algorithm_without_leases_is_rejected(
    redis_client: Redis,
) -> None:
    evaluation = Evaluation(TokenBucket(), "limiters:{x}", Rate(1, 1.0), 0, lease="1.1")
    with pytest.raises(ValidationError) as raised:
        await LimitEvaluator(redis_client).evaluate([evaluation])
    assert [v.field for v in raised.value.violations] == ["lease"]


async def test_limiters_batch_acquires_and_releases_leases_in_one_call(
    redis_client: Redis,
) -> None:
    evaluator = LimitEvaluator(redis_client)
    rate = Rate(limit=2, period_s=3600)
    take = Evaluation(Concurrency(), "limiters:{lease}:batch", rate, 1)
    first, second, third = await evaluator.evaluate([take, take, take])
    assert [first.allowed, second.allowed, third.allowed] == [True, True, False]
    assert first.lease != second.lease
    release = Evaluation(Concurrency(), take.key, rate, 0, lease=first.lease)
    released, again = await evaluator.evaluate([release, take])
    assert released.allowed
    assert again.allowed
    assert again.remaining == 0


def test_limiters_every_builtin_loads_through_its_entry_point() -> None:
    plugins = load_plugins(LIMITERS)
    assert set(ALGORITHMS) <= set(plugins.loaded)
    assert not {name: error for name, error in plugins.failures.items() if name in ALGORITHMS}


async def test_limiters_batch_mixes_algorithms_and_survives_script_flush(
    redis_client: Redis,
) -> None:
    evaluator = LimitEvaluator(redis_client)
    rate = Rate(limit=1, period_s=3600)
    batch = [
        Evaluation(FixedWindow(), "limiters:{mix}:a", rate, 1),
        Evaluation(TokenBucket(), "limiters:{mix}:b", rate, 1),
    ]
    assert [d.allowed for d in await evaluator.evaluate(batch)] == [True, True]
    await redis_client.script_flush()
    # NOSCRIPT is answered by loading the scripts; nothing is counted twice.
    assert [d.allowed for d in await evaluator.evaluate(batch)] == [False, False]
    assert await redis_client.get("limiters:{mix}:a") == b"2"


async def test_limiters_concurrent_callers_share_a_pipeline_and_get_their_own_decisions(
    redis_client: Redis,
) -> None:
    evaluator = LimitEvaluator(redis_client)
    rate = Rate(limit=10, period_s=3600)
    shared = Evaluation(TokenBucket(), "limiters:{coalesce}:shared", rate, 1)

    async def call(index: int) -> list[bool]:
        own = Evaluation(FixedWindow(), f"limiters:{{coalesce}}:own-{index}", rate, index % 3 + 1)
        decisions = await evaluator.evaluate([shared, own] if index % 2 else [shared])
        return [d.allowed for d in decisions]

    results = await asyncio.gather(*(call(i) for i in range(30)))
    assert sum(result[0] for result in results) == 10
    assert all(result[1:] in ([], [True]) for result in results)
    assert [len(result) for result in results] == [1 + i % 2 for i in range(30)]


async def test_limiters_unreachable_redis_fails_every_coalesced_caller() -> None:
    client = connect_redis("redis://127.0.0.1:1/0", timeout_s=0.2, retries=0)
    evaluator = LimitEvaluator(client)
    rate = Rate(limit=1, period_s=1)
    calls = [evaluator.evaluate([Evaluation(Gcra(), f"k{i}", rate, 1)]) for i in range(5)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, BackendError) and r.retryable for r in results), results
    await client.aclose()
