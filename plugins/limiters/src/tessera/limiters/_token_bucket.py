from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tessera.core.plugins import LimitDecision, Rate
from tessera.limiters._capacity_grants import CapacityGrants
from tessera.limiters._script import (
    PRELUDE,
    capacity,
    integers,
    seconds,
    standard_arguments,
)

# ARGV[4]: the bucket's capacity (the burst). ARGV[5]: '' (take `cost`), 'grant' (take up to
# `cost`) or 'return' (put `cost` unused tokens back).
_SCRIPT = (
    PRELUDE
    + """
local size = tonumber(ARGV[4]) or limit
local mode = ARGV[5] or ''
if limit == 0 then
  if mode == 'return' then return {0, 0} end
  return {0, 0, -1, 0, 0}
end
local refill = limit / period
local state = redis.call('HMGET', KEYS[1], 't', 's')
local tokens = size
if state[1] then
  tokens = math.min(size, tonumber(state[1]) + math.max(now - tonumber(state[2]), 0) * refill)
end
local function store()
  redis.call('HSET', KEYS[1], 't', string.format('%.9f', tokens), 's', string.format('%.0f', now))
  redis.call('PEXPIRE', KEYS[1], math.ceil((size - tokens) / refill / 1000) + 1)
end
if mode == 'return' then
  local given = math.max(math.min(cost, size - tokens), 0)
  tokens = tokens + given
  if given > 0 then store() end
  return {math.floor(given + 1e-9), math.floor(tokens + 1e-9)}
end
local take = cost
if mode == 'grant' then take = math.min(cost, math.floor(tokens + 1e-9)) end
local allowed = 0
-- the tolerance absorbs rounding of the refill arithmetic, far below one microsecond of refill
if tokens + 1e-9 >= math.max(take, 1) then allowed = 1 end
if allowed == 1 and take > 0 then
  tokens = math.max(tokens - take, 0)
  store()
end
local retry = 0
if allowed == 0 then
  if mode == 'grant' then
    retry = (1 - tokens) / refill
  elseif cost > size then
    retry = -1
  else
    retry = (math.max(cost, 1) - tokens) / refill
  end
  take = 0
end
local reset = math.ceil((size - tokens) / refill)
return {allowed, math.floor(tokens + 1e-9), math.ceil(retry), reset, take}
"""
)


class TokenBucket(CapacityGrants):
    """A token bucket holding up to `burst` tokens (default `limit`), refilled at `limit / period`.

    Exact semantics: a key starts full. At each evaluation the bucket gains
    `elapsed * limit / period` tokens since the last admitted request (capped at its capacity,
    `Rate.burst` or `limit` when 0), using the Redis server's clock in microseconds. A request is
    admitted iff the bucket holds at least `cost` tokens, which it then loses; denied requests
    take nothing. So a burst admits exactly `capacity` unit-cost requests, then one every
    `period / limit` seconds. `remaining` is the whole number of tokens left (up to the
    capacity); `retry_after_s` is when enough tokens will be back (`inf` when `cost` exceeds the
    capacity); `reset_after_s` is when the bucket will be full. A limit of 0 denies all. A peek
    (cost 0) is admitted iff at least one token is there.

    Quota grants (`GrantingLimiter`): a grant takes `min(wanted, whole tokens)`; unused tokens
    given back return to the bucket, up to its capacity. The grant's `valid_s` is `inf`: tokens
    taken at `t` and spent until `t + ttl` (the caller's bound) let at most `limit * ttl /
    period` more units through in a period than the bucket alone would.
    """

    def script(self) -> str:
        """Return the Lua source."""
        return _SCRIPT

    def arguments(self, rate: Rate, cost: int) -> Sequence[int | float | str]:
        """Encode `limit, period_us, cost[, capacity]`; raises ValidationError when out of range."""
        size = capacity(rate)
        arguments = standard_arguments(rate, cost)
        return (*arguments, size) if rate.burst else arguments

    def decision(self, rate: Rate, cost: int, reply: Any) -> LimitDecision:
        """Decode `{allowed, whole tokens left, retry_us (-1: never), reset_us, taken}`."""
        allowed, tokens, retry_us, reset_us, _ = integers(reply, 5)
        return LimitDecision(
            allowed=bool(allowed),
            limit=rate.limit,
            remaining=max(tokens, 0),
            retry_after_s=float("inf") if retry_us < 0 else seconds(retry_us),
            reset_after_s=seconds(reset_us),
        )
