"""Tessera's limiter scripts against the `limits` library on the same Redis, in-process.

Usage: ``python bench/ratelimit_algorithms.py [--duration S] [--warmup S] [--concurrency N]
[--json] [--target HOST:PORT] [--smoke]``

Cases, each measured right after its baseline in the same run, on redis-py asyncio clients with
the same timeouts and health checks (``limits`` runs on its ``redispy`` implementation):

- ``limits_fixed_window`` (baseline) and ``tessera_fixed_window``: one hit on one key, limit far
  out of reach, through ``limits.aio.strategies.FixedWindowRateLimiter.hit`` and through
  ``LimitEvaluator.evaluate`` with ``FixedWindow``.
- ``limits_sliding_window_counter`` (baseline) and ``tessera_sliding_window``: the same with the
  weighted two-window counters of both libraries.

Goal (issue 5): ratio >= 1.5. The script starts an embedded Redis; ``--target HOST:PORT`` uses
that Redis instead.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import limits
from harness import BenchOptions, Comparison, measure, run
from limits.aio.storage import RedisStorage
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)

from tessera.core.embedded import RedisServer
from tessera.core.plugins import Limiter, Rate
from tessera.core.redis import DEFAULT_TIMEOUT_S, connect_redis
from tessera.limiters import Evaluation, FixedWindow, LimitEvaluator, SlidingWindow

LIMIT = 1_000_000_000
PERIOD_S = 60


class DeniedError(RuntimeError):
    """A hit the benchmark expects to be admitted was not."""


@asynccontextmanager
async def redis_url(options: BenchOptions) -> AsyncIterator[str]:
    if options.target is not None:
        yield f"redis://{options.target}/0"
        return
    async with AsyncExitStack() as stack:
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="tessera-rl-algo-"))
        server = await asyncio.to_thread(RedisServer(directory).start)
        stack.callback(server.stop)
        yield server.url


def peer_hit(
    peer: RateLimiter, item: limits.RateLimitItem, key: str
) -> Callable[[], Awaitable[None]]:
    async def hit() -> None:
        if not await peer.hit(item, key):
            raise DeniedError(key)

    return hit


def our_hit(evaluator: LimitEvaluator, limiter: Limiter, key: str) -> Callable[[], Awaitable[None]]:
    rate = Rate(LIMIT, PERIOD_S)

    async def hit() -> None:
        [decision] = await evaluator.evaluate([Evaluation(limiter, key, rate, 1)])
        if not decision.allowed:
            raise DeniedError(key)

    return hit


async def bench(options: BenchOptions) -> list[Comparison]:
    async with redis_url(options) as url:
        client = connect_redis(url)
        # The peer gets the client settings connect_redis gives ours (timeouts, health checks).
        storage = RedisStorage(
            url.replace("redis://", "async+redis://"),
            implementation="redispy",
            socket_connect_timeout=DEFAULT_TIMEOUT_S,
            socket_timeout=DEFAULT_TIMEOUT_S,
            health_check_interval=30,
        )
        evaluator = LimitEvaluator(client)
        item = limits.parse(f"{LIMIT}/{PERIOD_S} seconds")
        pairs: list[tuple[str, RateLimiter, str, Limiter]] = [
            ("fixed_window", FixedWindowRateLimiter(storage), "fixed_window", FixedWindow()),
            (
                "sliding_window_counter",
                SlidingWindowCounterRateLimiter(storage),
                "sliding_window",
                SlidingWindow(),
            ),
        ]
        comparisons = []
        try:
            for peer_name, peer, ours_name, limiter in pairs:
                baseline = await measure(
                    f"limits_{peer_name}", peer_hit(peer, item, uuid.uuid4().hex), options
                )
                ours = await measure(
                    f"tessera_{ours_name}",
                    our_hit(evaluator, limiter, f"bench:{{{uuid.uuid4().hex}}}"),
                    options,
                )
                comparisons.append(Comparison(ours, baseline))
        finally:
            await client.aclose()
        return comparisons


if __name__ == "__main__":
    sys.exit(run(__doc__ or "", bench))
