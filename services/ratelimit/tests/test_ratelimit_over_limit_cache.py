import asyncio
import uuid

from tessera.client.ratelimit import RateLimiter
from tessera.core.embedded import RedisServer
from tessera.core.redis import connect_redis
from tessera.ratelimit._over_limit_cache import OverLimitCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_ratelimit_over_limit_cache_expires_entries_at_their_reset() -> None:
    clock = FakeClock()
    cache = OverLimitCache(10, clock)
    cache.add("k", 2.0)
    assert cache.seconds_left("k") == 2.0
    clock.now += 1.5
    assert cache.seconds_left("k") == 0.5
    clock.now += 0.5
    assert cache.seconds_left("k") == 0
    assert len(cache) == 0
    assert cache.seconds_left("unknown") == 0


def test_ratelimit_over_limit_cache_is_bounded_and_forgets() -> None:
    clock = FakeClock()
    cache = OverLimitCache(2, clock)
    for key in ("a", "b", "c"):
        cache.add(key, 10.0)
    assert len(cache) == 2
    assert cache.seconds_left("a") == 0  # the earliest added was dropped
    cache.add("b", 20.0)  # re-adding makes it the newest
    cache.add("d", 10.0)
    assert (cache.seconds_left("b"), cache.seconds_left("c")) == (20.0, 0)
    cache.forget(["b", "x"])
    assert cache.seconds_left("b") == 0
    assert cache.seconds_left("d") == 10.0


def test_ratelimit_over_limit_cache_ignores_useless_entries_and_can_be_disabled() -> None:
    cache = OverLimitCache(10, FakeClock())
    cache.add("never", float("inf"))
    cache.add("now", 0.0)
    assert len(cache) == 0
    disabled = OverLimitCache(0, FakeClock())
    disabled.add("k", 1.0)
    assert disabled.seconds_left("k") == 0


async def test_ratelimit_local_cache_answers_known_over_limit_keys_without_redis(
    start_ratelimit, redis_server: RedisServer
) -> None:
    redis = connect_redis(redis_server.url)
    try:
        for size, expected in ((100, "over limit (local cache)"), (0, "within limit")):
            async with (
                start_ratelimit(ratelimit_local_cache_size=size) as (running, _),
                RateLimiter.connect(running.server.address) as limiter,
            ):
                user = uuid.uuid4().hex
                results = [await limiter.check("api", [{"ip": user}]) for _ in range(3)]
                assert [bool(r) for r in results] == [True, True, False]
                # The counter vanishes behind the replica's back (another replica's Reset):
                # only a replica that did not cache the key asks Redis again.
                assert await redis.delete(f"tessera:ratelimit:gcra:{{api}}:ip={user}") == 1
                after = (await limiter.check("api", [{"ip": user}])).decisions[0]
                assert after.reason == expected
                assert after.allowed is (size == 0)
    finally:
        await redis.aclose()


async def test_ratelimit_local_cache_entry_expires_at_the_window_reset(start_ratelimit) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        key = {"per_second": uuid.uuid4().hex}
        for _ in range(10):
            result = await limiter.check("api", [key])
            if not result and result.decisions[0].reason == "over limit (local cache)":
                break
        else:
            raise AssertionError("2 per second never became a local-cache denial")
        cached = result.decisions[0]
        assert 0 < cached.retry_after_s <= 1.0
        assert cached.remaining == 0
        await asyncio.sleep(cached.retry_after_s + 0.05)
        assert await limiter.check("api", [key])


async def test_ratelimit_local_cache_respects_shadow_mode(start_ratelimit) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        trial = {"trial": uuid.uuid4().hex}
        results = [await limiter.check("messaging", [trial]) for _ in range(3)]
        assert all(results)
        assert [r.decisions[0].reason for r in results] == [
            "within limit",
            "shadow mode (over limit)",
            "shadow mode (over limit, local cache)",
        ]
        assert all(r.decisions[0].shadow_mode for r in results)
