import asyncio
import sys
from pathlib import Path

# bench/ holds scripts, not an installed package: import them the way `python bench/x.py` does.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import smoke
from _lock_workers import measure_spans
from harness import BenchOptions
from lock_semaphore import PermitOccupancy, permits_for


async def test_measure_spans_records_the_returned_part_and_runs_each_item() -> None:
    used: list[str] = []

    async def span(item: str) -> int:
        used.append(item)
        await asyncio.sleep(0.01)
        return 2_000_000  # 2 ms, whatever the sleep took

    options = BenchOptions(duration_s=0.001, warmup_s=0.0)
    result = await measure_spans("spans", span, ["a", "b", "c"], options)
    assert sorted(used) == ["a", "b", "c"], "each worker completes at least one span"
    assert result.samples == 3
    assert result.p50_ms == result.p99_ms == 2.0


async def test_permit_occupancy_counts_overlapping_holders() -> None:
    occupancy = PermitOccupancy(permits=3)
    await asyncio.gather(*(occupancy.hold(client) for client in range(3)))
    assert occupancy.most_held == 3
    assert occupancy.holding == 0
    assert dict(occupancy.grants) == {0: 1, 1: 1, 2: 1}
    assert [permits_for(m) for m in (1, 7, 16)] == [1, 1, 4]


def test_smoke_runs_the_semaphore_and_election_benchmarks() -> None:
    names = {path.name for path in smoke.benchmark_scripts()}
    assert {"lock_semaphore.py", "lock_election.py"} <= names
