"""Quota leases: local decisions per second, and the global overshoot of 8 clients.

Usage: ``python bench/ratelimit_leases.py [--duration S] [--warmup S] [--concurrency N] [--json]
[--smoke]``

Cases, in this order in one run, on one rate-limit service (started with etcd and Redis):

- ``check_1`` (baseline): ``RateLimiter.check`` with one descriptor, ``--concurrency`` callers:
  a decision the service makes.
- ``quota_local_decisions``: ``QuotaLease.try_acquire`` in a loop on a rule no run exhausts
  (batches of 100,000 tokens renewed in the background): a decision made in the client.
  Goal (issue 5): >= 1,000,000 decisions/s.
- ``sync_quota_local_decisions``: the same through ``SyncRateLimiter.quota`` (a
  ``SyncQuotaLease``, thread-safe) from a plain thread.
- ``quota_8_clients``: 8 ``QuotaLease`` clients (one channel each, one event loop) spend
  tokens of ONE fixed-window rule of ``LIMIT`` per second as fast as they can for the duration
  (10 s for the issue's figure); ops/s counts their attempts. Each admitted decision is
  attributed to the wall-clock millisecond it was made in; stderr gets the admitted count per
  second and the global overshoot: the units admitted above ``LIMIT`` in any window, over all
  the units the windows allowed. Goal: <= 1 %.
- ``quota_8_clients_sliding_window``: the same on a ``sliding_window`` rule of ``LIMIT`` per
  second. stderr adds the weighted estimate the spent units make at each millisecond
  (``current + floor(previous * (1 - elapsed / period))``, the previous window's weight taken
  at the millisecond's start, so it reads at most 0.1 % high) against ``LIMIT``: its
  overshoot, and the most units spent in any sliding second (1 ms steps), which the algorithm
  only approximates.
- ``quota_8_clients_leaky_bucket``: the same on a ``leaky_bucket`` rule of ``LIMIT`` per second
  (leases of ``ttl_s`` 0.1): stderr adds the water the spent units would make in the bucket
  (drained ``LIMIT / 1000`` per millisecond) against its capacity ``LIMIT``; the documented
  bound on its overshoot is ``LIMIT * ttl``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections import Counter

from harness import BenchOptions, CaseResult, Comparison, measure, run, summarize
from ratelimit_envoy import ratelimit_stack

from tessera.client.ratelimit import QuotaLease, RateLimiter, SyncRateLimiter

#: The shared rule's allowance per second in the 8-client case.
LIMIT = 100_000
CLIENTS = 8
#: Attempts per block: a client yields to the event loop (renewals, other clients) between.
BLOCK = 1_000
RULES = f"""\
domain: bench
descriptors:
  - key: client
    rate_limit:
      unit: second
      requests_per_unit: 1000000000
  - key: shared
    rate_limit:
      unit: second
      requests_per_unit: {LIMIT}
  - key: sliding
    rate_limit:
      unit: second
      requests_per_unit: {LIMIT}
      algorithm: sliding_window
  - key: leaky
    rate_limit:
      unit: second
      requests_per_unit: {LIMIT}
      algorithm: leaky_bucket
"""
#: The ttl of the leaky-bucket leases: the documented overshoot bound is LIMIT * ttl.
LEAKY_TTL_S = 0.1


class DeniedError(RuntimeError):
    """A decision the benchmark expects to be admitted was not."""


async def local_decisions(limiter: RateLimiter, options: BenchOptions) -> CaseResult:
    async with QuotaLease(limiter, "bench", {"client": "local"}, batch=100_000) as quota:
        try_acquire = quota.try_acquire

        async def block() -> None:
            # A denial here only means a renewal arrived late; it is still a decision.
            for _ in range(10_000):
                try_acquire()
            await asyncio.sleep(0)

        return await measure(
            "quota_local_decisions",
            block,
            dataclasses.replace(options, concurrency=1),
            units_per_op=10_000,
        )


def sync_local_decisions(endpoint: str, options: BenchOptions) -> CaseResult:
    # The thread-safe facade: one uncontended lock around each decision, from this thread.
    samples: list[int] = []
    with (
        SyncRateLimiter(endpoint) as limiter,
        limiter.quota("bench", {"client": "sync"}, batch=100_000) as quota,
    ):
        try_acquire = quota.try_acquire
        warm = time.monotonic() + options.warmup_s
        while time.monotonic() < warm:
            try_acquire()
        began, cpu = time.perf_counter_ns(), time.process_time()
        stop = time.monotonic() + options.duration_s
        while time.monotonic() < stop:
            started = time.perf_counter_ns()
            for _ in range(10_000):
                try_acquire()
            samples.append(time.perf_counter_ns() - started)
        elapsed = time.perf_counter_ns() - began
        return summarize(
            "sync_quota_local_decisions",
            samples,
            elapsed,
            units_per_op=10_000,
            client_cpu_s=time.process_time() - cpu,
        )


async def eight_clients(
    endpoint: str, options: BenchOptions, key: str = "shared", ttl_s: float = 1.0
) -> tuple[CaseResult, Counter[int]]:
    """Spend one rule's tokens from 8 clients; the result and the admitted units per ms."""
    admitted: Counter[int] = Counter()
    samples: list[int] = []
    limiters = [RateLimiter.connect(endpoint) for _ in range(CLIENTS)]
    stop = time.monotonic() + options.duration_s
    wall_clock = time.time

    async def client(limiter: RateLimiter) -> None:
        descriptor = {key: "all"}
        async with QuotaLease(limiter, "bench", descriptor, batch=2_000, ttl_s=ttl_s) as quota:
            try_acquire = quota.try_acquire
            while time.monotonic() < stop:
                started = time.perf_counter_ns()
                for _ in range(BLOCK):
                    if try_acquire():
                        # Each admitted use counts in the wall-clock millisecond it was made in.
                        admitted[int(wall_clock() * 1000)] += 1
                samples.append(time.perf_counter_ns() - started)
                await asyncio.sleep(0)

    began, cpu = time.perf_counter_ns(), time.process_time()
    try:
        await asyncio.gather(*(client(limiter) for limiter in limiters))
    finally:
        for limiter in limiters:
            await limiter.close()
    elapsed = time.perf_counter_ns() - began
    name = "quota_8_clients" if key == "shared" else f"quota_8_clients_{ALGORITHMS[key]}"
    result = summarize(
        name, samples, elapsed, units_per_op=BLOCK, client_cpu_s=time.process_time() - cpu
    )
    return result, admitted


#: The algorithm of each rule the 8 clients may share.
ALGORITHMS = {"shared": "fixed_window", "sliding": "sliding_window", "leaky": "leaky_bucket"}


def _seconds(admitted: Counter[int]) -> Counter[int]:
    seconds: Counter[int] = Counter()
    for millisecond, units in admitted.items():
        seconds[millisecond // 1000] += units
    return seconds


def per_second(name: str, admitted: Counter[int]) -> Counter[int]:
    """Print the admitted units per epoch second and their overshoot above LIMIT."""
    seconds = _seconds(admitted)
    windows = sorted(seconds)
    over = sum(max(seconds[w] - LIMIT, 0) for w in windows)
    allowed = LIMIT * len(windows)
    print(
        f"{name}: admitted per second {[seconds[w] for w in windows]}, limit {LIMIT}; "
        f"global overshoot {over} units = {100 * over / allowed:.3f} % of {allowed}",
        file=sys.stderr,
    )
    return seconds


def sliding_estimate(name: str, admitted: Counter[int]) -> None:
    """Print the spent units' weighted estimate and their most in any sliding second."""
    seconds = per_second(name, admitted)
    first, last = min(admitted), max(admitted)
    worst_estimate = worst_second = spent_in_second = in_sliding = 0
    for millisecond in range(first, last + 1):
        second, elapsed = divmod(millisecond, 1000)
        if elapsed == 0:
            spent_in_second = 0
        spent_in_second += admitted[millisecond]
        weight = (1000 - elapsed) / 1000  # at the millisecond's start: reads high, never low
        estimate = spent_in_second + int(seconds[second - 1] * weight)
        worst_estimate = max(worst_estimate, estimate)
        in_sliding += admitted[millisecond] - admitted[millisecond - 1000]
        worst_second = max(worst_second, in_sliding)
    print(
        f"{name}: highest weighted estimate of spent units {worst_estimate} "
        f"(overshoot {100 * max(worst_estimate - LIMIT, 0) / LIMIT:.3f} % of {LIMIT}); "
        f"most spent in any sliding second {worst_second} ({worst_second / LIMIT:.3f} x limit)",
        file=sys.stderr,
    )


def bucket_water(name: str, admitted: Counter[int]) -> None:
    """Print the highest water the spent units make in a bucket of LIMIT leaking LIMIT/s."""
    seconds = _seconds(admitted)
    print(
        f"{name}: admitted per second {[seconds[w] for w in sorted(seconds)]} (a bucket lets "
        f"its capacity {LIMIT} through at once, then {LIMIT} a second)",
        file=sys.stderr,
    )
    level = highest = 0.0
    for millisecond in range(min(admitted), max(admitted) + 1):
        level = max(level - LIMIT / 1000, 0.0) + admitted[millisecond]
        highest = max(highest, level)
    print(
        f"{name}: highest water of spent units {highest:.0f} of capacity {LIMIT} "
        f"(overshoot {100 * max(highest - LIMIT, 0) / LIMIT:.3f} %; documented bound "
        f"{LIMIT * LEAKY_TTL_S:.0f} units = LIMIT x ttl {LEAKY_TTL_S} s)",
        file=sys.stderr,
    )


async def bench(options: BenchOptions) -> list[Comparison]:
    async with ratelimit_stack(RULES) as (endpoint, server):
        async with RateLimiter.connect(str(endpoint)) as limiter:

            async def check_one() -> None:
                if not await limiter.check("bench", [{"client": "remote"}]):
                    raise DeniedError("check_1")

            remote = await measure("check_1", check_one, options, server=server)
            local = await local_decisions(limiter, options)
        threaded = await asyncio.to_thread(sync_local_decisions, str(endpoint), options)
        shared, admitted = await eight_clients(str(endpoint), options)
        per_second(shared.case, admitted)
        sliding, admitted = await eight_clients(str(endpoint), options, "sliding")
        sliding_estimate(sliding.case, admitted)
        leaky, admitted = await eight_clients(str(endpoint), options, "leaky", LEAKY_TTL_S)
        bucket_water(leaky.case, admitted)
        return [
            Comparison(remote),
            Comparison(local, remote),
            Comparison(threaded, remote),
            Comparison(shared),
            Comparison(sliding),
            Comparison(leaky),
        ]


if __name__ == "__main__":
    sys.exit(run(__doc__ or "", bench))
