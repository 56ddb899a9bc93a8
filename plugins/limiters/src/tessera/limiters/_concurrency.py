from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tessera.core import ValidationError
from tessera.core.plugins import LimitDecision, Rate
from tessera.limiters._script import PRELUDE, integers, plain_arguments, seconds

# KEYS[1] is a sorted set with one member "<lease>:<unit>" per unit held, scored by the
# microsecond the lease expires at. ARGV[4] is the lease to release, with ARGV[3] = -units.
_SCRIPT = (
    PRELUDE
    + """
local stamp = string.format('%.0f', now)
local live = '(' .. stamp
local function reset_after()
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if last[2] and tonumber(last[2]) > now then return tonumber(last[2]) - now end
  return 0
end
if cost < 0 then
  local first = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[4] .. ':1'))
  local held = 0
  if first and first > now then held = 1 end
  for unit = 1, -cost do redis.call('ZREM', KEYS[1], ARGV[4] .. ':' .. unit) end
  return {held, redis.call('ZCOUNT', KEYS[1], live, '+inf'), 0, reset_after(), 0}
end
if limit == 0 then return {0, 0, -1, 0, 0} end
if cost > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', stamp) end
local held = redis.call('ZCOUNT', KEYS[1], live, '+inf')
local need = math.max(cost, 1)
local allowed = 0
if held + need <= limit then allowed = 1 end
local lease = 0
if allowed == 1 and cost > 0 then
  -- a lease is named after the microsecond it was taken at, made unique within the key
  lease = now
  while redis.call('ZSCORE', KEYS[1], string.format('%.0f', lease) .. ':1') do
    lease = lease + 1
  end
  local name = string.format('%.0f', lease)
  local expiry = string.format('%.0f', now + period)
  for unit = 1, cost do redis.call('ZADD', KEYS[1], expiry, name .. ':' .. unit) end
  held = held + cost
  redis.call('PEXPIRE', KEYS[1], math.ceil(period / 1000) + 1)
end
local retry = 0
if allowed == 0 then
  if need > limit then
    retry = -1
  else
    -- units free up as leases expire, earliest first
    local entry = redis.call(
      'ZRANGEBYSCORE', KEYS[1], live, '+inf', 'WITHSCORES', 'LIMIT', held + need - limit - 1, 1)
    retry = tonumber(entry[2]) - now
  end
end
return {allowed, held, math.ceil(retry), math.ceil(reset_after()), lease}
"""
)

_LEASE = re.compile(r"(\d{1,20})\.(\d{1,9})")


class Concurrency:
    """A cap on units in flight, each admission holding a lease until released or expired.

    Exact semantics: `limit` is the number of units that may be in flight at once and `period`
    the lease duration. A request of `cost` units is admitted iff the units held by unexpired
    leases plus `cost` fit in `limit`; it then holds a new lease (`LimitDecision.lease`) on
    `cost` units until it is released (`release_arguments`) or `period` has passed since the
    admission (the Redis server's clock), whichever is first; denied requests hold nothing. So a
    burst admits exactly `limit` unit-cost requests, and a unit is available again right after
    one is released. `remaining` is `limit` minus the units held; `retry_after_s` is when enough
    leases will have expired if none is released (`inf` when `cost` exceeds `limit`);
    `reset_after_s` is when the last lease expires. A limit of 0 denies all; a peek (cost 0) is
    admitted iff one unit is free and holds nothing. Releasing a lease twice, or after it expired,
    is harmless and reported as not held.
    """

    def script(self) -> str:
        """Return the Lua source."""
        return _SCRIPT

    def arguments(self, rate: Rate, cost: int) -> Sequence[int | float | str]:
        """Encode `limit, period_us, cost`; raises ValidationError when out of range."""
        return plain_arguments(rate, cost)

    def release_arguments(self, rate: Rate, lease: str) -> Sequence[int | float | str]:
        """Encode `limit, period_us, -units, lease id` for a lease this class handed out.

        Raises:
            ValidationError: `lease` is malformed (field `lease`), or the rate is out of range.

        """
        found = _LEASE.fullmatch(lease)
        if found is None or int(found[2]) == 0:
            raise ValidationError.for_field("lease", "must be a lease a decision handed out")
        limit, period_us, _ = plain_arguments(rate, 0)
        return limit, period_us, -int(found[2]), found[1]

    def decision(self, rate: Rate, cost: int, reply: Any) -> LimitDecision:
        """Decode `{allowed, units held, retry_us (-1: never), reset_us, lease id (0: none)}`."""
        allowed, held, retry_us, reset_us, lease = integers(reply, 5)
        return LimitDecision(
            allowed=bool(allowed),
            limit=rate.limit,
            remaining=max(rate.limit - held, 0),
            retry_after_s=float("inf") if retry_us < 0 else seconds(retry_us),
            reset_after_s=seconds(reset_us),
            lease=f"{lease}.{cost}" if lease else "",
        )
