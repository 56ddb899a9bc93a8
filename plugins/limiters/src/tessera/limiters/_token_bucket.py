from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tessera.core.plugins import LimitDecision, Rate
from tessera.limiters._script import PRELUDE, integers, seconds, standard_arguments

_SCRIPT = (
    PRELUDE
    + """
if limit == 0 then return {0, 0, -1, 0} end
local refill = limit / period
local state = redis.call('HMGET', KEYS[1], 't', 's')
local tokens = limit
if state[1] then
  tokens = math.min(limit, tonumber(state[1]) + math.max(now - tonumber(state[2]), 0) * refill)
end
local allowed = 0
-- the tolerance absorbs rounding of the refill arithmetic, far below one microsecond of refill
if tokens + 1e-9 >= math.max(cost, 1) then allowed = 1 end
if allowed == 1 and cost > 0 then
  tokens = math.max(tokens - cost, 0)
  redis.call('HSET', KEYS[1], 't', string.format('%.9f', tokens), 's', string.format('%.0f', now))
  redis.call('PEXPIRE', KEYS[1], math.ceil((limit - tokens) / refill / 1000) + 1)
end
local retry = 0
if allowed == 0 then
  if cost > limit then retry = -1 else retry = (math.max(cost, 1) - tokens) / refill end
end
return {allowed, math.floor(tokens + 1e-9), math.ceil(retry), math.ceil((limit - tokens) / refill)}
"""
)


class TokenBucket:
    """A token bucket holding up to `limit` tokens, refilled continuously at `limit / period`.

    Exact semantics: a key starts full. At each evaluation the bucket gains
    `elapsed * limit / period` tokens since the last admitted request (capped at `limit`), using
    the Redis server's clock in microseconds. A request is admitted iff the bucket holds at least
    `cost` tokens, which it then loses; denied requests take nothing. So a burst admits exactly
    `limit` unit-cost requests, then one every `period / limit` seconds. `remaining` is the whole
    number of tokens left; `retry_after_s` is when enough tokens will be back (`inf` when `cost`
    exceeds `limit`); `reset_after_s` is when the bucket will be full. A limit of 0 denies all.
    A peek (cost 0) is admitted iff at least one token is there.
    """

    def script(self) -> str:
        """Return the Lua source."""
        return _SCRIPT

    def arguments(self, rate: Rate, cost: int) -> Sequence[int | float | str]:
        """Encode `limit, period_us, cost`; raises ValidationError when out of range."""
        return standard_arguments(rate, cost)

    def decision(self, rate: Rate, cost: int, reply: Any) -> LimitDecision:
        """Decode `{allowed, whole tokens left, retry_us (-1: never), reset_us}`."""
        allowed, tokens, retry_us, reset_us = integers(reply, 4)
        return LimitDecision(
            allowed=bool(allowed),
            limit=rate.limit,
            remaining=max(tokens, 0),
            retry_after_s=float("inf") if retry_us < 0 else seconds(retry_us),
            reset_after_s=seconds(reset_us),
        )
