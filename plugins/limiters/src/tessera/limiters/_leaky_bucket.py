from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tessera.core.plugins import LimitDecision, Rate
from tessera.limiters._capacity_grants import CapacityGrants
from tessera.limiters._script import PRELUDE, integers, plain_arguments, seconds

# ARGV[4]: the capacity (always `limit`: a leaky bucket has no burst), sent with a mode only.
# ARGV[5]: '' (add `cost` if it fits), 'grant' (add up to `cost` units) or 'return' (take `cost`
# unused units back out of the water).
_SCRIPT = (
    PRELUDE
    + """
local mode = ARGV[5] or ''
if limit == 0 then
  if mode == 'return' then return {0, 0} end
  return {0, 0, -1, 0, 0}
end
local drain = limit / period
local state = redis.call('HMGET', KEYS[1], 'l', 's')
local level = 0
if state[1] then
  level = math.max(tonumber(state[1]) - math.max(now - tonumber(state[2]), 0) * drain, 0)
end
local function store()
  redis.call('HSET', KEYS[1], 'l', string.format('%.9f', level), 's', string.format('%.0f', now))
  redis.call('PEXPIRE', KEYS[1], math.ceil(level / drain / 1000) + 1)
end
local function fits()
  return math.floor(limit - level + 1e-9)
end
if mode == 'return' then
  -- only water still in the bucket can come out: what leaked is gone either way
  local given = math.max(math.min(cost, level), 0)
  level = level - given
  if given > 0 then store() end
  return {math.floor(given + 1e-9), fits()}
end
if mode == 'grant' then cost = math.max(math.min(cost, fits()), 0) end
local need = math.max(cost, 1)
local allowed = 0
-- the tolerance absorbs rounding of the drain arithmetic, far below one microsecond of drain
if level + need <= limit + 1e-9 then allowed = 1 end
local delay = 0
if allowed == 1 and cost > 0 then
  -- this request leaves the bucket once the water already in it has leaked out
  delay = level / drain
  level = level + cost
  store()
end
local retry = 0
if allowed == 0 then
  if need > limit then retry = -1 else retry = (level + need - limit) / drain end
end
local last = math.floor(delay)
-- a grant answers the units it added where a check answers its delay
if mode == 'grant' then last = allowed * cost end
return {allowed, fits(), math.ceil(retry), math.ceil(level / drain), last}
"""
)


class LeakyBucket(CapacityGrants):
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

    Quota grants (`GrantingLimiter`): a grant adds `min(wanted, whole units that fit)` units of
    water at once, as that many unit requests admitted together would; it carries no delay
    (the client spends the units as it likes: a lease polices like `TokenBucket`, it does not
    shape). `valid_s` is `inf`, with `TokenBucket`'s bound on overshoot (`limit * ttl /
    period`). Unused units given back come out of the water still in the bucket, never more
    than is there: units that would have leaked out by now are gone either way.
    """

    def script(self) -> str:
        """Return the Lua source."""
        return _SCRIPT

    def arguments(self, rate: Rate, cost: int) -> Sequence[int | float | str]:
        """Encode `limit, period_us, cost`; raises ValidationError when out of range."""
        return plain_arguments(rate, cost)

    def grant_capacity(self, rate: Rate) -> int:
        """Reject a burst or a calendar alignment (no bucket size but `limit`); return `limit`."""
        return plain_arguments(rate, 0)[0]

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
