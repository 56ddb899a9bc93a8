"""The SDK and the CLI show the usage an adaptive limit's last step saw (the usage feed).

Each test runs the rate-limit server on a Redis of its own and publishes the feed with the
function the `aggregate_usage` job runs (`aggregate_usage_once`) from the usage the server
really counted: a feed of domain `api` in the session Redis would hold back the adaptive limits
of every later test for three minutes.
"""

import asyncio
import json
import uuid

import pytest
from typer.testing import CliRunner, Result

from tessera.client.cli._app import app
from tessera.client.ratelimit import AdaptiveLimitState, RateLimiter, SyncRateLimiter
from tessera.core import TesseraSettings
from tessera.core.embedded import RedisServer
from tessera.core.redis import connect_redis
from tessera.ratelimit import read_usage
from tessera.ratelimit.jobs import aggregate_usage_once
from tessera.testing import ServerFactory

#: The feed's rates cover from the start of the minute this long ago: 60 to 120 s, so a
#: minute boundary during a test never leaves its decisions out.
FEED_WINDOW_S = 60.0


@pytest.fixture
async def own_redis(redis_factory: ServerFactory[RedisServer]) -> RedisServer:
    return await asyncio.to_thread(redis_factory)


async def publish_feed(redis_url: str, decisions: int) -> None:
    """Wait until the server flushed `decisions` of domain `api`, then run the job's aggregation."""
    client = connect_redis(redis_url)
    try:
        for _ in range(200):
            rows = await read_usage(client, since_s=600)
            if sum(row.total for row in rows if row.domain == "api") >= decisions:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"usage never reached {decisions}: {rows}")
    finally:
        await client.aclose()
    settings = TesseraSettings(redis_url=redis_url)
    counts = await aggregate_usage_once(settings, feed_window_s=FEED_WINDOW_S)
    assert counts["decisions"] == decisions


async def test_ratelimit_sdk_adaptive_state_carries_the_usage_feed(
    start_ratelimit, own_redis: RedisServer
) -> None:
    target = {"gradient": uuid.uuid4().hex}  # token bucket, gradient 10..100 from 50 a second

    async def outcome(limiter: RateLimiter) -> AdaptiveLimitState:
        result = await limiter.report_outcome("api", target, success=True, latency_s=0.01)
        assert result.adaptive is not None
        return result.adaptive

    async with (
        start_ratelimit(redis_url=own_redis.url, ratelimit_usage_flush_s=0.1) as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        fresh = (await limiter.explain("api", target)).decision.adaptive
        assert fresh is not None
        assert (fresh.limit, fresh.samples, fresh.usage) == (50, 0, None)
        # No feed published yet: the outcome alone moves the limit, and no usage is shown.
        alone = await outcome(limiter)
        assert alone.usage is None
        assert alone.limit > 50

        # Idle: 3 decisions in the window, on a limit of about 53 a second.
        for _ in range(3):
            assert await limiter.check("api", [target])
        await publish_feed(own_redis.url, 3)
        held = await outcome(limiter)
        assert held.limit == alone.limit  # a steady gradient step would have grown it
        usage = held.usage
        assert usage is not None
        assert usage.increase_held
        assert FEED_WINDOW_S <= usage.window_s <= FEED_WINDOW_S + 60
        # Explain, Peek and ReportOutcome counted nothing: the demand is the 3 checks.
        assert usage.offered_per_s == pytest.approx(3 / usage.window_s, rel=1e-3)
        assert (usage.admitted_per_s, usage.denied_per_s) == (usage.offered_per_s, 0.0)
        # A rate's demand is offered x period (1 s) over the limit before the step.
        assert usage.utilisation == pytest.approx(usage.offered_per_s / held.limit, rel=0.05)

        # Every answer that carries the state shows what the last step saw.
        explained = (await limiter.explain("api", target)).decision.adaptive
        peeked = (await limiter.peek("api", [target])).decisions[0].adaptive
        assert explained is not None
        assert peeked is not None
        assert explained.usage == peeked.usage == usage

        def explain_sync() -> AdaptiveLimitState | None:
            with SyncRateLimiter(running.server.address) as sync:
                return sync.explain("api", target).decision.adaptive

        from_thread = await asyncio.to_thread(explain_sync)
        assert from_thread is not None
        assert from_thread.usage == usage

        # Busy: 5,000 more decisions, most denied by the bucket (they are demand too).
        for _ in range(50):
            await limiter.check("api", [target] * 100)
        await publish_feed(own_redis.url, 5003)
        busy = await outcome(limiter)
        assert busy.usage is not None
        assert not busy.usage.increase_held
        assert busy.limit > held.limit
        assert busy.usage.utilisation > 0.5
        assert busy.usage.denied_per_s > 0
        assert busy.usage.offered_per_s == pytest.approx(
            busy.usage.admitted_per_s + busy.usage.denied_per_s, abs=1e-5
        )
        assert busy.usage.offered_per_s == pytest.approx(5003 / busy.usage.window_s, rel=1e-3)


async def test_ratelimit_cli_explain_and_report_outcome_show_the_usage(
    start_ratelimit, own_redis: RedisServer
) -> None:
    runner = CliRunner()
    descriptor = f"gradient={uuid.uuid4().hex}"

    async with start_ratelimit(redis_url=own_redis.url, ratelimit_usage_flush_s=0.1) as (
        running,
        _,
    ):

        async def invoke(*args: str) -> Result:
            arguments = ["ratelimit", *args, "--target", running.server.address]
            result = await asyncio.to_thread(runner.invoke, app, arguments)
            assert result.exit_code == 0, result.output
            return result

        def usage_line(output: str) -> str:
            [line] = [line for line in output.splitlines() if line.startswith("usage")]
            return line

        fresh = await invoke("explain", "api", descriptor)
        assert "adaptive limit (gradient): 50," in fresh.output
        assert usage_line(fresh.output).startswith("usage: none seen (no outcome yet;")
        alone = await invoke("report-outcome", "api", descriptor, "--latency", "0.01")
        assert usage_line(alone.output).startswith(
            "usage: none seen (no usage feed at the last outcome;"
        )

        for _ in range(3):
            await invoke("check", "api", descriptor)
        await publish_feed(own_redis.url, 3)
        reported = await invoke("report-outcome", "api", descriptor, "--latency", "0.01")
        line = usage_line(reported.output)
        assert line.startswith("usage over ")
        assert "denied 0.000/s" in line
        assert line.endswith(", increase held (below 0.5)")
        assert "2 outcomes" in reported.output

        # Explain shows the state the last step left, usage included, in text and JSON.
        explained = await invoke("explain", "api", descriptor)
        assert usage_line(explained.output) == line
        as_json = await invoke("explain", "api", descriptor, "--json")
        usage = json.loads(as_json.output)["decision"]["adaptive"]["usage"]
        assert usage["increase_held"] is True
        assert usage["denied_per_s"] == 0.0
        assert usage["offered_per_s"] == pytest.approx(3 / usage["window_s"], rel=1e-3)
        assert f"over {usage['window_s']:g}s: offered {usage['offered_per_s']:.3f}/s" in line
