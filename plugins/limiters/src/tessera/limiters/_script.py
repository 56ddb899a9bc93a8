from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tessera.core import BackendError, ValidationError
from tessera.core.plugins import LimitDecision, Rate

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


#: Argument that switches a script into granting up to `cost` units (a quota lease).
GRANT = "grant"
#: Argument that switches a script into giving back `cost` unused units of a grant.
RETURN = "return"
#: Most units one grant may ask for: a client spending more at once is not limiting anything.
MAX_GRANT = 1_000_000_000

_STAMP = re.compile(r"\d{0,20}")


def epoch_only(rate: Rate) -> None:
    """Reject a calendar alignment for an algorithm without windows (field `rate.align`)."""
    if rate.align != "epoch":
        raise ValidationError.for_field("rate.align", "applies to windowed algorithms only")


def no_burst(rate: Rate) -> None:
    """Reject a burst for an algorithm without a bucket (field `rate.burst`)."""
    if rate.burst != 0:
        raise ValidationError.for_field("rate.burst", "applies to bucket algorithms only")


def capacity(rate: Rate) -> int:
    """Validate a bucket's burst and return its capacity: the burst, or `limit` when 0.

    Raises:
        ValidationError: The burst is negative (field `rate.burst`) or the rate is calendar
            aligned (field `rate.align`).

    """
    epoch_only(rate)
    if rate.burst < 0:
        raise ValidationError.for_field("rate.burst", "must be >= 0")
    return rate.burst or rate.limit


def wanted_units(wanted: int) -> int:
    """Validate how many units a grant asks for (field `tokens`)."""
    if not 1 <= wanted <= MAX_GRANT:
        raise ValidationError.for_field("tokens", f"must be in [1, {MAX_GRANT}]")
    return wanted


def returned_units(stamp: str, unused: int) -> tuple[str, int]:
    """Validate the stamp and the unused units of a give-back.

    Raises:
        ValidationError: The stamp is not a grant's (field `lease`) or `unused` is out of
            range (field `unused`).

    """
    if _STAMP.fullmatch(stamp) is None:
        raise ValidationError.for_field("lease", "must be a lease a grant handed out")
    if not 0 <= unused <= MAX_GRANT:
        raise ValidationError.for_field("unused", f"must be in [0, {MAX_GRANT}]")
    return stamp, unused


def given_back(rate: Rate, reply: Any) -> LimitDecision:
    """Decode a give-back's reply `{units given back, units left}` into its decision."""
    given, remaining = integers(reply, 2)
    return LimitDecision(
        allowed=given > 0,
        limit=rate.limit,
        remaining=max(remaining, 0),
        retry_after_s=0.0,
        reset_after_s=0.0,
    )


def plain_arguments(rate: Rate, cost: int) -> tuple[int, int, int]:
    """`standard_arguments` of an algorithm with neither bucket nor calendar windows.

    Raises:
        ValidationError: As `standard_arguments`, or the rate has a burst (field `rate.burst`)
            or a calendar alignment (field `rate.align`).

    """
    no_burst(rate)
    epoch_only(rate)
    return standard_arguments(rate, cost)
