from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tessera.core.plugins import LimitDecision, Rate
from tessera.limiters._script import PRELUDE, integers, plain_arguments, seconds

_SCRIPT = (
    PRELUDE
    + """
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
local estimate = current + math.floor(previous * (period - elapsed) / period)
local allowed = 0
if estimate + cost <= limit and (cost > 0 or estimate < limit) then allowed = 1 end
if allowed == 1 and cost > 0 then
  current = current + cost
  estimate = estimate + cost
  local stamp = string.format('%.0f', window)
  redis.call('HSET', KEYS[1], 'w', stamp, 'c', current, 'p', previous)
  redis.call('PEXPIRE', KEYS[1], math.ceil((2 * period - elapsed) / 1000))
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
            retry_after_s=float("inf") if retry_us < 0 else seconds(retry_us),
            reset_after_s=seconds(reset_us),
        )
