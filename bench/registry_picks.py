"""Picks per second of every installed balancer, as the registry SDK calls them.

Usage: ``python bench/registry_picks.py [--duration S] [--warmup S] [--concurrency N] [--json]
[--smoke]``

Each case is one balancer plugin (loaded through the ``tessera.balancers`` entry points, as
``ServiceWatch`` loads it) picking among 10 weighted endpoints passed as the same tuple on
every call, as the SDK's discovery cache does; hash balancers get a different key per pick,
and load-aware ones (least request) get ``complete`` after each pick. One timed operation is a
batch of 1,000 picks, so ``ops_per_s`` counts picks. The baseline ``random_choice`` is
``random.choice`` over the same tuple: the floor of any pick in Python. Goal on the 2-core
machine: >= 500,000 picks/s for every balancer. ``--target`` does not apply (no server).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Awaitable, Callable

from harness import BenchOptions, Comparison, measure, run

from tessera.core.plugins import (
    BALANCERS,
    Balancer,
    Endpoint,
    LoadAwareBalancer,
    load_plugins,
)

BATCH = 1000
ENDPOINTS = tuple(
    Endpoint(id=f"instance-{n}", address=f"10.0.0.{n + 1}:8080", weight=float(1 + n % 3))
    for n in range(10)
)
KEYS = [f"user-{n}".encode() for n in range(BATCH)]


def _batch(pick: Callable[[bytes | None], object]) -> Callable[[], Awaitable[None]]:
    async def operation() -> None:
        for key in KEYS:
            pick(key)

    return operation


def _picker(balancer: Balancer) -> Callable[[bytes | None], object]:
    """Return one SDK pick: the balancer's pick, then `complete` when it is load aware."""
    if isinstance(balancer, LoadAwareBalancer):
        aware = balancer

        def pick_and_complete(key: bytes | None) -> object:
            endpoint = aware.pick(ENDPOINTS, key)
            aware.complete(endpoint)
            return endpoint

        return pick_and_complete
    return lambda key: balancer.pick(ENDPOINTS, key)


async def bench(options: BenchOptions) -> list[Comparison]:
    # One worker: picks are synchronous, so more workers would only interleave on one thread.
    options = BenchOptions(
        duration_s=options.duration_s, warmup_s=options.warmup_s, concurrency=1,
        json=options.json, smoke=options.smoke,
    )  # fmt: skip
    floor = await measure(
        "random_choice", _batch(lambda key: random.choice(ENDPOINTS)), options, units_per_op=BATCH
    )
    comparisons = []
    for name, plugin in sorted(load_plugins(BALANCERS).loaded.items()):
        pick = _picker(plugin.create())
        result = await measure(f"pick_{name}", _batch(pick), options, units_per_op=BATCH)
        comparisons.append(Comparison(result, floor))
    return comparisons


if __name__ == "__main__":
    sys.exit(run(__doc__ or "", bench))
