import asyncio
import uuid

import pytest

from tessera.client.ratelimit import (
    RateLimitedError,
    RateLimiter,
    SyncRateLimiter,
    protect,
    protect_sync,
    rate_limited,
)


class BoomError(Exception):
    pass


async def test_ratelimit_protect_reports_outcomes_until_the_breaker_opens(
    start_ratelimit,
) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        target = [{"target": uuid.uuid4().hex}]
        ran = 0

        async def failing_call() -> None:
            nonlocal ran
            async with protect(limiter, "api", target):
                ran += 1
                raise BoomError

        for _ in range(4):  # window 4, min_calls 4, error ratio 0.5: four failures open it
            with pytest.raises(BoomError):
                await failing_call()
        with pytest.raises(RateLimitedError) as raised:
            async with protect(limiter, "api", target):
                ran += 1
        assert ran == 4
        assert raised.value.retryable
        assert raised.value.retry_after_s is not None
        assert raised.value.retry_after_s > 0
        assert raised.value.result.decisions[0].reason == "circuit open"
        assert "circuit open" in raised.value.message


async def test_ratelimit_protect_releases_concurrency_leases(start_ratelimit) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        job = [{"job": uuid.uuid4().hex}]  # 2 in flight
        for _ in range(5):
            async with protect(limiter, "api", job) as result:
                assert result.decisions[0].lease
        async with protect(limiter, "api", job), protect(limiter, "api", job):
            with pytest.raises(RateLimitedError):
                async with protect(limiter, "api", job):
                    pass
        # Both leases were released on the way out, even after the denial inside.
        assert (await limiter.peek("api", job)).decisions[0].remaining == 2


async def test_ratelimit_rate_limited_decorator_paces_counts_and_feeds_adaptive_limits(
    start_ratelimit,
) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        backend = uuid.uuid4().hex

        @rate_limited(limiter, "api", lambda value: [{"backend": backend}, {"user": value}])
        async def call(value: str) -> str:
            await asyncio.sleep(0.01)
            return value.upper()

        user = uuid.uuid4().hex
        assert [await call(user), await call(user)] == [user.upper()] * 2
        with pytest.raises(RateLimitedError) as raised:
            await call(user)  # the user rule allows 2 per hour
        assert raised.value.result.decisions[1].reason == "over limit"
        explanation = await limiter.explain("api", {"backend": backend})
        assert explanation.decision.adaptive is not None
        assert explanation.decision.adaptive.samples == 2
        assert explanation.decision.adaptive.latency_s >= 0.01
        # Every lease was released, also the one the backend took in the denied third call.
        assert explanation.decision.remaining == explanation.decision.limit
        assert call.__name__ == "call"


async def test_ratelimit_sync_guard_and_decorator(start_ratelimit) -> None:
    async with start_ratelimit() as (running, _):

        def use() -> tuple[list[str], str, int]:
            with SyncRateLimiter(running.server.address) as limiter:
                ip = uuid.uuid4().hex

                @rate_limited(limiter, "api", [{"ip": ip}])
                def greet(name: str) -> str:
                    return f"hello {name}"

                greetings = [greet("a"), greet("b")]
                try:
                    greet("c")
                except RateLimitedError as error:
                    reason = error.result.decisions[0].reason
                job = [{"job": uuid.uuid4().hex}]
                with protect_sync(limiter, "api", job), protect_sync(limiter, "api", job):
                    pass
                remaining = limiter.peek("api", job).decisions[0].remaining
                return greetings, reason, remaining

        greetings, reason, remaining = await asyncio.to_thread(use)
        assert greetings == ["hello a", "hello b"]
        assert reason == "over limit"
        assert remaining == 2


async def test_ratelimit_rate_limited_rejects_a_function_of_the_wrong_kind(
    start_ratelimit,
) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        with pytest.raises(TypeError):
            rate_limited(limiter, "api", [{"ip": "x"}])(lambda: None)
