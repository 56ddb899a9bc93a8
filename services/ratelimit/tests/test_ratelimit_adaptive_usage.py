"""The adaptive controller's step with the usage feed, on a real Redis (no service around it).

Each test writes a domain's usage feed by hand (what the `aggregate_usage` job publishes) and
feeds outcomes to `AdaptiveStore.report` the way `ReportOutcome` does.
"""

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tessera.core.embedded import RedisServer
from tessera.core.redis import connect_redis
from tessera.ratelimit import DomainConfig, installed_limiters, match, parse_domain
from tessera.ratelimit._adaptive import HOLD_INCREASE_BELOW, AdaptiveState, AdaptiveStore
from tessera.ratelimit._config import AdaptiveRule
from tessera.ratelimit._decider import ADAPTIVE
from tessera.ratelimit._plan import redis_key
from tessera.ratelimit.jobs import RuleRates, usage_feed_key

WINDOW = "\x1fwindow"

_RULES = """
descriptors:
  - key: rate              # 100 a second, aimd between 10 and 1000
    rate_limit: {unit: second, requests_per_unit: 100}
    adaptive:
      strategy: aimd
      min_limit: 10
      max_limit: 1000
      initial_limit: 100
      target_latency_s: 0.1
      increase: 100
      cooldown_s: 0.001
  - key: slots             # units in flight, aimd between 2 and 40
    rate_limit: {unit: minute, requests_per_unit: 10, algorithm: concurrency, name: slots}
    adaptive:
      strategy: aimd
      min_limit: 2
      max_limit: 40
      initial_limit: 10
      target_latency_s: 1
      increase: 10
  - key: smooth            # gradient between 10 and 60
    rate_limit: {unit: second, requests_per_unit: 100, algorithm: token_bucket}
    adaptive: {strategy: gradient, min_limit: 10, max_limit: 60, initial_limit: 50}
"""


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = connect_redis(redis_server.url)
    yield client
    await client.aclose()


def domain() -> DomainConfig:
    name = f"feed-{uuid.uuid4().hex[:10]}"
    return parse_domain(f"domain: {name}\n{_RULES}", algorithms=installed_limiters())


async def feed(redis: Redis, config: DomainConfig, rules: dict[str, RuleRates]) -> None:
    key = usage_feed_key(config.domain)
    await redis.hset(key, mapping={WINDOW: "120", **{k: v.encode() for k, v in rules.items()}})


def target(config: DomainConfig, entry: tuple[str, str]) -> tuple[str, AdaptiveRule]:
    rule = match(config, (entry,)).adaptive
    assert rule is not None
    return redis_key(config.domain, ADAPTIVE, (entry,)), rule


async def step(
    store: AdaptiveStore, config: DomainConfig, entry: tuple[str, str], latency_s: float = 0.01
) -> AdaptiveState:
    key, rule = target(config, entry)
    found = match(config, (entry,))
    return await store.report(key, rule, success=True, latency_s=latency_s, source=found)


def rates(offered: float) -> RuleRates:
    return RuleRates(offered, offered, 0.0, 120.0)


async def test_ratelimit_adaptive_without_a_feed_moves_by_outcomes_alone(redis: Redis) -> None:
    config, store = domain(), AdaptiveStore(redis, 0)
    state = await step(store, config, ("rate", "a"))
    assert (state.limit, state.usage) == (101, None)  # 100 + 100/100
    [current] = await store.current([target(config, ("rate", "a"))])
    assert (current.limit, current.usage) == (101, None)


async def test_ratelimit_adaptive_holds_the_increase_of_an_idle_rate_rule(redis: Redis) -> None:
    config, store = domain(), AdaptiveStore(redis, 0)
    await feed(redis, config, {})  # the job ran: the rule decided nothing in the window
    state = await step(store, config, ("rate", "a"))
    assert state.limit == 100
    assert state.usage is not None
    assert (state.usage.utilisation, state.usage.increase_held) == (0.0, True)
    assert state.usage.rates == RuleRates(0.0, 0.0, 0.0, 120.0)
    # 40 decisions a second on a limit of 100 a second: 0.4 < HOLD_INCREASE_BELOW, held.
    await feed(redis, config, {"descriptors[0]": rates(40.0)})
    state = await step(store, config, ("rate", "a"))
    assert state.limit == 100
    assert state.usage is not None
    assert state.usage.utilisation == pytest.approx(0.4)
    assert state.usage.increase_held
    assert HOLD_INCREASE_BELOW == 0.5


async def test_ratelimit_adaptive_grows_a_used_limit_and_decreases_an_idle_one(
    redis: Redis,
) -> None:
    config, store = domain(), AdaptiveStore(redis, 0)
    await feed(redis, config, {"descriptors[0]": RuleRates(60.0, 50.0, 10.0, 120.0)})
    grown = await step(store, config, ("rate", "b"))
    assert grown.limit == 101
    assert grown.usage is not None
    assert grown.usage.utilisation == pytest.approx(0.6)
    assert not grown.usage.increase_held
    assert grown.usage.rates == RuleRates(60.0, 50.0, 10.0, 120.0)
    # Idle traffic never holds a decrease: latency above the target still halves the limit.
    await feed(redis, config, {})
    shrunk = await step(store, config, ("rate", "b"), latency_s=0.5)
    assert shrunk.limit == 50
    assert shrunk.usage is not None
    assert not shrunk.usage.increase_held
    # The limit in force is what utilisation is measured against: 30/s on 50 is 0.6, grow.
    await feed(redis, config, {"descriptors[0]": rates(30.0)})
    for _ in range(3):  # the latency average falls back under the target
        state = await step(store, config, ("rate", "b"))
    assert state.limit > 50
    assert state.usage is not None
    assert state.usage.utilisation == pytest.approx(30.0 / state.limit, rel=0.05)


async def test_ratelimit_adaptive_concurrency_demand_is_rate_times_latency(redis: Redis) -> None:
    config, store = domain(), AdaptiveStore(redis, 0)
    # 20 calls a second lasting 0.2 s: 4 in flight on a limit of 10 -> 0.4, held.
    await feed(redis, config, {"slots": rates(20.0)})
    held = await step(store, config, ("slots", "x"), latency_s=0.2)
    assert held.limit == 10
    assert held.usage is not None
    assert held.usage.utilisation == pytest.approx(0.4)
    assert held.usage.increase_held
    # 30 a second at 0.2 s: 6 in flight -> 0.6, the limit grows (10 + 10/10).
    await feed(redis, config, {"slots": rates(30.0)})
    grown = await step(store, config, ("slots", "x"), latency_s=0.2)
    assert grown.limit == 11
    assert grown.usage is not None
    assert not grown.usage.increase_held


async def test_ratelimit_adaptive_gradient_holds_when_idle_and_stays_bounded(redis: Redis) -> None:
    config, store = domain(), AdaptiveStore(redis, 0)
    await feed(redis, config, {"descriptors[2]": rates(10.0)})  # 10/s on 50: 0.2
    held = await step(store, config, ("smooth", "s"))
    assert held.limit == 50
    assert held.usage is not None
    assert held.usage.increase_held
    await feed(redis, config, {"descriptors[2]": rates(1000.0)})
    limits = [(await step(store, config, ("smooth", "s"))).limit for _ in range(10)]
    assert limits == sorted(limits)
    assert limits[-1] == 60  # max_limit bounds it as before
    # What the last step saw is what a check reads (Explain shows it).
    [current] = await AdaptiveStore(redis, 0).current([target(config, ("smooth", "s"))])
    assert current.limit == 60
    assert current.usage is not None
    assert current.usage.rates.offered_per_s == 1000.0
    assert not current.usage.increase_held


async def test_ratelimit_adaptive_ignores_a_feed_value_the_job_did_not_write(
    redis: Redis,
) -> None:
    config, store = domain(), AdaptiveStore(redis, 0)
    feed_key = usage_feed_key(config.domain)
    await redis.hset(feed_key, mapping={WINDOW: "120", "descriptors[0]": "x"})
    state = await step(store, config, ("rate", "c"))
    # The outcome still counts, moved by itself as without a feed.
    assert (state.limit, state.samples, state.usage) == (101, 1, None)
