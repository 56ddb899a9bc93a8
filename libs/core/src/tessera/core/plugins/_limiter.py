from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Rate:
    """How much traffic a key may have: `limit` units per `period_s` seconds.

    Attributes:
        limit: Units allowed per period, >= 0 (0 denies everything).
        period_s: Length of the period in seconds, > 0.

    """

    limit: int
    period_s: float


@dataclass(frozen=True, slots=True)
class LimitDecision:
    """The outcome of one `Limiter.acquire`.

    Attributes:
        allowed: Whether the units were granted (and counted).
        limit: The `Rate.limit` the decision was made against.
        remaining: Units still available right after this decision, >= 0.
        retry_after_s: When denied, the earliest time in seconds after which the same request may
            be allowed; 0 when allowed.
        reset_after_s: Seconds until the key is back to its full allowance if no more traffic
            arrives.

    """

    allowed: bool
    limit: int
    remaining: int
    retry_after_s: float
    reset_after_s: float


@runtime_checkable
class Limiter(Protocol):
    """Decides whether traffic for a key fits a rate. Entry-point group: `tessera.limiters`.

    Factory: the entry point names a class or callable that takes the shared
    `redis.asyncio.Redis` client as its only argument and returns a limiter. A limiter keeps its
    counters in Redis (keys carry a hash tag so they live in one cluster slot), so any number of
    service replicas share them.

    Concurrency: `acquire` is called concurrently from many tasks of one event loop and from other
    processes; the check-and-count must be atomic in Redis (a Lua script or a transaction), never
    a read followed by a write from Python.
    """

    async def acquire(self, key: str, rate: Rate, cost: int = 1) -> LimitDecision:
        """Count `cost` units for `key` if they fit in `rate`.

        Args:
            key: The limited thing (a descriptor, a client id); opaque to the limiter.
            rate: The allowance of the key; the same key is always called with the same rate
                unless the configuration changed.
            cost: Units this request takes, >= 1.

        Returns:
            The decision; denied requests are not counted.

        Raises:
            ValidationError: `rate` or `cost` is out of range.
            BackendError: Redis failed or timed out; the caller decides whether to fail open.

        """
        ...
