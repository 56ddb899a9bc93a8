from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tessera.core import ValidationError
from tessera.core.plugins import LimitDecision, QuotaGrant, Rate
from tessera.limiters._script import (
    GRANT,
    PRELUDE,
    RETURN,
    given_back,
    integers,
    plain_arguments,
    returned_units,
    seconds,
    wanted_units,
)

# ARGV[4]: '' (count `cost` if it fits), 'grant' (take up to `cost` units) or 'return' (give
# `cost` unused units back to the window whose index is ARGV[5]).
_SCRIPT = (
    PRELUDE
    + """
local mode = ARGV[4] or ''
local window = math.floor(now / period)
local state = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
local seen = tonumber(state[1])
local current, previous = 0, 0
if seen == window then
  current, previous = tonumber(state[2]), tonumber(state[3])
elseif seen == window - 1 then
  previous = tonumber(state[2])
end
local elapsed = now - window * period
local function estimated()
  return current + math.floor(previous * (period - elapsed) / period)
end
local function store()
  redis.call('HSET', KEYS[1], 'w', string.format('%.0f', window), 'c', current, 'p', previous)
  redis.call('PEXPIRE', KEYS[1], math.ceil((2 * period - elapsed) / 1000))
end
if mode == 'return' then
  -- unused units leave the count of the window they were granted in while it still weighs:
  -- the current one fully, the previous one by what is left of its weight
  local stamp = tonumber(ARGV[5])
  local given = 0
  if stamp == window then
    given = math.min(cost, current)
    current = current - given
  elseif stamp == window - 1 then
    given = math.min(cost, previous)
    previous = previous - given
  end
  if given > 0 then store() end
  return {given, limit - estimated()}
end
local estimate = estimated()
local granted = 0
if mode == 'grant' then
  cost = math.max(math.min(cost, limit - estimate), 0)
  granted = cost
end
local allowed = 0
if estimate + cost <= limit and (cost > 0 or estimate < limit) then allowed = 1 end
if allowed == 1 and cost > 0 then
  current = current + cost
  estimate = estimate + cost
  store()
end
local need = math.max(cost, 1)
local retry = 0
if allowed == 0 then
  if need > limit then
    retry = -1
  elseif current + need <= limit then
    -- floor(previous * w) <= limit - current - need
    -- <=> w < (limit - current - need + 1) / previous
    local w = (limit - current - need + 1) / previous
    retry = math.max(period * (1 - w) - elapsed, 1)
  else
    -- next window: the current count becomes the previous one
    local w = (limit - need + 1) / current
    retry = (period - elapsed) + math.max(period * (1 - w), 0)
  end
end
if mode == 'grant' then
  return {granted, estimate, math.ceil(retry), math.ceil(period - elapsed), window}
end
local reset = 0
if current > 0 then
  reset = 2 * period - elapsed
elseif previous > 0 then
  reset = period - elapsed
end
return {allowed, estimate, math.ceil(retry), math.ceil(reset)}
"""
)


class SlidingWindow:
    """A sliding window approximated by two weighted fixed-window counters (Cloudflare's).

    Exact semantics: windows are cut as for `FixedWindow`. At time `t`, `elapsed` into the current
    window, the estimate is `current + floor(previous * (period - elapsed) / period)`, where
    `previous` is the count of the window just before (0 if that window saw no traffic). A request
    is admitted iff `estimate + cost <= limit`; only admitted requests are counted. So a burst in
    one fresh window admits exactly `limit` unit-cost requests, and right after a window boundary
    the previous window's count still weighs almost fully. `remaining` is `limit - estimate`
    (after counting); `retry_after_s` is when the estimate will have dropped enough for the same
    cost (`inf` when the cost exceeds the limit); `reset_after_s` is when both counters are gone.
    A peek (cost 0) is admitted iff the estimate is below `limit`.

    Quota grants (`GrantingLimiter`): a grant takes `min(wanted, limit - estimate)` units into
    the current window's count and is valid until that window ends (`valid_s`), so every unit
    is spent in the window it was counted in and the estimate never counts fewer units than
    were spent. Unused units given back leave the count of the window they were granted in
    while it still weighs: the current window's count, or after the boundary the previous
    window's (then freeing `unused * (period - elapsed) / period` of the estimate, rounded as
    the estimate is); two windows later they weigh nothing and nothing is given back.
    """

    def script(self) -> str:
        """Return the Lua source."""
        return _SCRIPT

    def arguments(self, rate: Rate, cost: int) -> Sequence[int | float | str]:
        """Encode `limit, period_us, cost`; raises ValidationError when out of range."""
        return plain_arguments(rate, cost)

    def decision(self, rate: Rate, cost: int, reply: Any) -> LimitDecision:
        """Decode `{allowed, estimate, retry_us (-1: never), reset_us}`."""
        allowed, estimate, retry_us, reset_us = integers(reply, 4)
        return LimitDecision(
            allowed=bool(allowed),
            limit=rate.limit,
            remaining=max(rate.limit - estimate, 0),
            retry_after_s=_retry(retry_us),
            reset_after_s=seconds(reset_us),
        )

    def grant_arguments(self, rate: Rate, wanted: int) -> Sequence[int | float | str]:
        """Encode a grant of up to `wanted` units (ValidationError when out of range)."""
        return (*plain_arguments(rate, wanted_units(wanted)), GRANT)

    def grant(self, rate: Rate, wanted: int, reply: Any) -> QuotaGrant:
        """Decode `{granted, estimate, retry_us, us to the window's end, window index}`."""
        granted, estimate, retry_us, end_us, window = integers(reply, 5)
        return QuotaGrant(
            granted=granted,
            limit=rate.limit,
            remaining=max(rate.limit - estimate, 0),
            retry_after_s=0.0 if granted else _retry(retry_us),
            valid_s=seconds(end_us),
            stamp=str(window),
        )

    def return_arguments(self, rate: Rate, stamp: str, unused: int) -> Sequence[int | float | str]:
        """Encode a give-back of `unused` units to the window `stamp` names."""
        stamp, unused = returned_units(stamp, unused)
        if not stamp:
            raise ValidationError.for_field("lease", "must be a lease a grant handed out")
        return (*plain_arguments(rate, unused), RETURN, stamp)

    def returned(self, rate: Rate, reply: Any) -> LimitDecision:
        """Decode `{units given back, limit - estimate}`."""
        return given_back(rate, reply)


def _retry(retry_us: int) -> float:
    # -1 from the script: the cost exceeds the limit, it never fits
    return float("inf") if retry_us < 0 else seconds(retry_us)
