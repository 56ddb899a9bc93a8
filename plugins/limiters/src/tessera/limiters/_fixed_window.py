from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from tessera.core import ValidationError
from tessera.core.plugins import LimitDecision, QuotaGrant, Rate
from tessera.limiters._script import (
    GRANT,
    PRELUDE,
    RETURN,
    integers,
    no_burst,
    returned_units,
    seconds,
    standard_arguments,
    wanted_units,
)

# ARGV[4]: '' (epoch windows) or the calendar unit 'week', 'month', 'year'.
# ARGV[5]: '' (count `cost` hits), 'grant' (take up to `cost` units, never counting a refused
# one) or 'return' (give `cost` units back to the window that ends at ARGV[6]).
_SCRIPT = (
    PRELUDE
    + """
local calendar = ARGV[4] or ''
local mode = ARGV[5] or ''
local window_end
if calendar == '' then
  window_end = (math.floor(now / period) + 1) * period
else
  -- proleptic Gregorian calendar in UTC (H. Hinnant's days_from_civil / civil_from_days)
  local day = 86400000000
  local days = math.floor(now / day)
  local function from_civil(y, m, d)
    if m <= 2 then y = y - 1 end
    local era = math.floor(y / 400)
    local yoe = y - era * 400
    local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
    return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
  end
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor(
    (doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400
  if month <= 2 then year = year + 1 end
  local next_day
  if calendar == 'week' then
    -- 1970-01-05 (day 4) was a Monday
    next_day = days - (days - 4) % 7 + 7
  elseif calendar == 'month' then
    if month == 12 then next_day = from_civil(year + 1, 1, 1)
    else next_day = from_civil(year, month + 1, 1) end
  else
    next_day = from_civil(year + 1, 1, 1)
  end
  window_end = next_day * day
end
local function expire_at_window_end()
  redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', math.ceil(window_end / 1000)))
end
if mode == 'return' then
  local count = tonumber(redis.call('GET', KEYS[1])) or 0
  local given = 0
  if tonumber(ARGV[6]) == window_end then given = math.min(cost, count) end
  if given > 0 then count = redis.call('DECRBY', KEYS[1], given) end
  return {given, count}
end
local count
if mode == 'grant' then
  count = tonumber(redis.call('GET', KEYS[1])) or 0
  local granted = math.max(math.min(cost, limit - count), 0)
  if granted > 0 then
    count = redis.call('INCRBY', KEYS[1], granted)
    if count == granted then expire_at_window_end() end
  end
  return {count, window_end - now, granted, window_end}
end
if cost > 0 then
  count = redis.call('INCRBY', KEYS[1], cost)
  -- the first hit of a window creates the key: it expires exactly when the window ends
  if count == cost then expire_at_window_end() end
else
  count = tonumber(redis.call('GET', KEYS[1])) or 0
end
return {count, window_end - now}
"""
)

_new_tuple = tuple.__new__
_DAY_S = 86_400
#: Periods whose calendar windows differ from epoch windows, by the unit the script cuts.
_CALENDAR_UNITS: Mapping[float, str] = MappingProxyType(
    {7 * _DAY_S: "week", 30 * _DAY_S: "month", 365 * _DAY_S: "year"}
)


class FixedWindow:
    """Fixed windows counting every hit: envoyproxy/ratelimit's algorithm.

    Exact semantics: time (the Redis server's) is cut into windows `[k * period, (k+1) * period)`
    counted from the Unix epoch. Each evaluation adds `cost` to the window's counter whether it is
    admitted or not (as envoyproxy/ratelimit's INCRBY does) and is admitted iff the counter after
    the addition is <= `limit`. So in one window exactly `limit` unit-cost requests are admitted,
    and a request of cost > remaining is denied and still counted. The counter is a string (INCRBY)
    that expires at the end of the window its first hit fell in (PEXPIREAT). `remaining` is
    `max(limit - counter, 0)`; `retry_after_s` and `reset_after_s` are the time left in the window.
    A peek (cost 0) is admitted iff the counter is below `limit`.

    Calendar alignment (`Rate.align == "calendar"`): a period of a week (7 days) cuts windows at
    Monday 00:00 UTC, of a month (30 days) at the 1st of each month 00:00 UTC (so windows of 28
    to 31 days), of a year (365 days) at January 1st 00:00 UTC (365 or 366 days). Periods that
    divide a day are cut at midnight UTC either way (Unix time has no leap seconds), so they
    accept `calendar` and behave as `epoch`; other periods reject it (field `rate.align`).

    Quota grants (`GrantingLimiter`): a grant of up to `wanted` units takes
    `min(wanted, limit - counter)` (never counting refused units) and is valid until the window
    ends; unused units given back are subtracted from the counter if their window is still the
    current one, and forgotten otherwise (that window is over).
    """

    def script(self) -> str:
        """Return the Lua source."""
        return _SCRIPT

    def arguments(self, rate: Rate, cost: int) -> Sequence[int | float | str]:
        """Encode `limit, period_us, cost[, calendar unit]`; ValidationError when out of range."""
        unit = _calendar_unit(rate)
        arguments = standard_arguments(rate, cost)
        return (*arguments, unit) if unit else arguments

    def decision(self, rate: Rate, cost: int, reply: Any) -> LimitDecision:
        """Decode `{counter, microseconds to the window's end}`."""
        count, reset_us = integers(reply, 2)
        limit = rate.limit
        allowed = count <= limit if cost > 0 else count < limit
        reset = reset_us / 1e6 if reset_us > 0 else 0.0  # `seconds`, inlined: one per descriptor
        # one is built per descriptor of every Check: every field given, in order, so the tuple
        # is built in C without the named tuple's Python `__new__` (half this method's cost)
        return _new_tuple(
            LimitDecision,
            (allowed, limit, max(limit - count, 0), 0.0 if allowed else reset, reset, 0.0, ""),
        )

    def grant_arguments(self, rate: Rate, wanted: int) -> Sequence[int | float | str]:
        """Encode a grant of up to `wanted` units (ValidationError when out of range)."""
        unit = _calendar_unit(rate)
        return (*standard_arguments(rate, wanted_units(wanted)), unit, GRANT)

    def grant(self, rate: Rate, wanted: int, reply: Any) -> QuotaGrant:
        """Decode `{counter, us to the window's end, granted, window end us}`."""
        count, reset_us, granted, window_end = integers(reply, 4)
        reset = seconds(reset_us)
        return QuotaGrant(
            granted=granted,
            limit=rate.limit,
            remaining=max(rate.limit - count, 0),
            retry_after_s=0.0 if granted else reset,
            valid_s=reset,
            stamp=str(window_end),
        )

    def return_arguments(self, rate: Rate, stamp: str, unused: int) -> Sequence[int | float | str]:
        """Encode a give-back of `unused` units to the window `stamp` names."""
        stamp, unused = returned_units(stamp, unused)
        if not stamp:
            raise ValidationError.for_field("lease", "must be a lease a grant handed out")
        return (*standard_arguments(rate, unused), _calendar_unit(rate), RETURN, stamp)

    def returned(self, rate: Rate, reply: Any) -> LimitDecision:
        """Decode `{units given back, counter}`."""
        given, count = integers(reply, 2)
        return LimitDecision(
            allowed=given > 0,
            limit=rate.limit,
            remaining=max(rate.limit - count, 0),
            retry_after_s=0.0,
            reset_after_s=0.0,
        )


def _calendar_unit(rate: Rate) -> str:
    # The calendar unit the script cuts windows by, or "" for epoch windows.
    no_burst(rate)
    if rate.align == "epoch":
        return ""
    unit = _CALENDAR_UNITS.get(rate.period_s)
    if unit is not None:
        return unit
    if rate.period_s > 0 and _DAY_S % rate.period_s == 0:
        return ""  # windows dividing a day start at midnight UTC anyway
    raise ValidationError.for_field(
        "rate.align",
        "calendar windows need a period of a week, a month, a year or a divisor of a day",
    )
