from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tessera.core import BackendError, ValidationError
from tessera.core.plugins import Rate

#: Opening lines of every script: the server's clock in microseconds (a double holds it exactly)
#: and the three arguments every algorithm takes. Reading TIME before writing needs effects
#: replication, the default from Redis 5 on (the minimum Tessera supports).
PRELUDE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
"""

_US_PER_S = 1_000_000


def standard_arguments(rate: Rate, cost: int) -> tuple[int, int, int]:
    """Validate a rate and a cost and encode them as `limit, period_us, cost`.

    Raises:
        ValidationError: The limit or cost is negative, or the period is not positive.

    """
    if rate.limit < 0:
        raise ValidationError.for_field("rate.limit", "must be >= 0")
    period_us = round(rate.period_s * _US_PER_S)
    if period_us <= 0:
        raise ValidationError.for_field("rate.period_s", "must be > 0")
    if cost < 0:
        raise ValidationError.for_field("cost", "must be >= 0")
    return rate.limit, period_us, cost


def integers(reply: Any, size: int) -> Sequence[int]:
    """Check that a script reply is a list of `size` integers and return it.

    Raises:
        BackendError: The reply has another shape (not retryable: the script is wrong).

    """
    if not isinstance(reply, list) or len(reply) != size:
        raise BackendError(f"limiter script replied {reply!r}", backend="redis", retryable=False)
    return list(map(int, reply))


def seconds(microseconds: int) -> float:
    """Convert microseconds from a script reply to seconds, never negative."""
    return max(microseconds, 0) / _US_PER_S
