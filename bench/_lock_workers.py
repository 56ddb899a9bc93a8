"""The worker pool the lock benchmarks share: each worker gets an item of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


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
