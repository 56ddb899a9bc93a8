from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tessera.core.plugins import LimitDecision, Rate
from tessera.limiters._script import PRELUDE, integers, plain_arguments, seconds

_SCRIPT = (
    PRELUDE
    + """
if limit == 0 then return {0, 0, -1, 0, 0} end
local drain = limit / period
local state = redis.call('HMGET', KEYS[1], 'l', 's')
local level = 0
if state[1] then
  level = math.max(tonumber(state[1]) - math.max(now - tonumber(state[2]), 0) * drain, 0)
end
local need = math.max(cost, 1)
local allowed = 0
-- the tolerance absorbs rounding of the drain arithmetic, far below one microsecond of drain
if level + need <= limit + 1e-9 then allowed = 1 end
local delay = 0
if allowed == 1 and cost > 0 then
  -- this request leaves the bucket once the water already in it has leaked out
  delay = level / drain
  level = level + cost
  redis.call('HSET', KEYS[1], 'l', string.format('%.9f', level), 's', string.format('%.0f', now))
  redis.call('PEXPIRE', KEYS[1], math.ceil(level / drain / 1000) + 1)
end
local retry = 0
if allowed == 0 then
  if need > limit then retry = -1 else retry = (level + need - limit) / drain end
end
local remaining = math.floor(limit - level + 1e-9)
return {allowed, remaining, math.ceil(retry), math.ceil(level / drain), math.floor(delay)}
"""
)


class LeakyBucket:
    """A leaky bucket as a queue: bursts are admitted up to `limit` and paced out at the rate.

    Exact semantics: a key's bucket holds up to `limit` units of water and leaks continuously at
    `limit / period` units per second (the Redis server's clock, in microseconds); it starts
    empty. A request of `cost` units is admitted iff the water plus `cost` fits in `limit`, and
    then adds `cost` units; denied requests add nothing. So a burst admits exactly `limit`
    unit-cost requests, then one every `period / limit` seconds: the admitted counts equal
    `TokenBucket`'s. What differs is `delay_s`: the time the water already in the bucket needs
    to leak out, that is when the request leaves the queue. A caller that waits `delay_s` before
    going on sends admitted traffic onward evenly, one unit every `period / limit` seconds, never
    as a burst (traffic shaping, like nginx's `limit_req` without `nodelay`). `remaining` is the
    whole number of units that still fit; `retry_after_s` is when the same request would fit
    (`inf` when `cost` exceeds `limit`); `reset_after_s` is when the bucket will be empty. A limit
    of 0 denies all; a peek (cost 0) is admitted iff one unit would fit, and has no delay.
    """

    def script(self) -> str:
        """Return the Lua source."""
        return _SCRIPT

    def arguments(self, rate: Rate, cost: int) -> Sequence[int | float | str]:
        """Encode `limit, period_us, cost`; raises ValidationError when out of range."""
        return plain_arguments(rate, cost)

    def decision(self, rate: Rate, cost: int, reply: Any) -> LimitDecision:
        """Decode `{allowed, units that fit, retry_us (-1: never), reset_us, delay_us}`."""
        allowed, remaining, retry_us, reset_us, delay_us = integers(reply, 5)
        return LimitDecision(
            allowed=bool(allowed),
            limit=rate.limit,
            remaining=max(remaining, 0),
            retry_after_s=float("inf") if retry_us < 0 else seconds(retry_us),
            reset_after_s=seconds(reset_us),
            delay_s=seconds(delay_us),
        )
