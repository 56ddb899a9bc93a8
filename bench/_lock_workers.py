"""What the lock benchmarks share to drive workers: `WorkerPool` and `measure_spans`.

`WorkerPool` gives each worker an item of its own; `measure_spans` times only part of each
operation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from harness import BenchOptions, CaseResult, ServerHandle, summarize


class WorkerPool:
    """Hands each worker an item of its own (workers share the one operation callable)."""

    def __init__(self, items: list[Any]) -> None:
        self._free: asyncio.Queue[Any] = asyncio.Queue()
        for item in items:
            self._free.put_nowait(item)

    def operation(self, body: Callable[[Any], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        async def run_one() -> None:
            item = self._free.get_nowait()
            try:
                await body(item)
            finally:
                self._free.put_nowait(item)

        return run_one


#: One operation that times only part of itself: returns the nanoseconds that count.
Span = Callable[[Any], Awaitable[int]]


async def measure_spans(
    case: str,
    span: Span,
    items: list[Any],
    options: BenchOptions,
    server: ServerHandle | None = None,
) -> CaseResult:
    """Like `harness.measure`, for operations whose latency is only part of them.

    One worker per item loops calling `span(item)` until the duration is over (each worker
    completes at least one) and records the nanoseconds it returns, e.g. a Campaign until
    elected without the Resign that makes the next Campaign possible, or a failover measured
    between two events. ``ops_per_s`` counts operations per second of wall time.
    """

    async def run(duration_s: float, samples: list[int]) -> int:
        started = time.perf_counter_ns()
        deadline = started + int(duration_s * 1e9)

        async def worker(item: Any) -> None:
            while True:
                samples.append(await span(item))
                if time.perf_counter_ns() >= deadline:
                    return

        async with asyncio.TaskGroup() as group:
            for item in items:
                group.create_task(worker(item))
        return time.perf_counter_ns() - started

    if options.warmup_s > 0:
        await run(options.warmup_s, [])
    samples: list[int] = []
    client_cpu_start = time.process_time()
    server_cpu_start = 0.0 if server is None else server.cpu_seconds()
    elapsed_ns = await run(options.duration_s, samples)
    return summarize(
        case,
        samples,
        elapsed_ns,
        client_cpu_s=time.process_time() - client_cpu_start,
        server_cpu_s=None if server is None else server.cpu_seconds() - server_cpu_start,
    )
