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

# ARGV[4]: the burst (units let through at once). ARGV[5]: '' (take `cost`), 'grant' (take up to
# `cost`) or 'return' (give `cost` unused units back).
_SCRIPT = (
    PRELUDE
    + """
local size = tonumber(ARGV[4]) or limit
local mode = ARGV[5] or ''
if limit == 0 then
  if mode == 'return' then return {0, 0} end
  return {0, 0, -1, 0, 0}
end
local interval = period / limit
local tolerance = size * interval
local stored = tonumber(redis.call('GET', KEYS[1]))
local tat = math.max(stored or now, now)
local function store()
  if tat > now then
    redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
  else
    redis.call('DEL', KEYS[1])
  end
end
local function left()
  return math.floor((now + tolerance - tat) / interval + 1e-6)
end
if mode == 'return' then
  -- only units still ahead of the clock can come back
  local given = math.max(math.min(cost, math.floor((tat - now) / interval + 1e-6)), 0)
  tat = tat - given * interval
  if given > 0 then store() end
  return {given, left()}
end
if mode == 'grant' then cost = math.min(cost, math.max(left(), 0)) end
local need = math.max(cost, 1)
local allow_at = tat + need * interval - tolerance
local allowed = 0
-- the tolerance absorbs rounding when period / limit is not a whole number of microseconds
if allow_at <= now + 1e-3 then allowed = 1 end
local granted = 0
if allowed == 1 and cost > 0 then
  tat = tat + cost * interval
  granted = cost
  store()
end
local retry = 0
if allowed == 0 then
  if need > size and mode == '' then retry = -1 else retry = allow_at - now end
end
return {allowed, left(), math.ceil(retry), math.ceil(tat - now), granted}
"""
)


class Gcra(CapacityGrants):
    """The generic cell rate algorithm: a token bucket kept as one timestamp.

    Exact semantics: each unit is due `period / limit` seconds after the previous one (the
    emission interval), with a tolerance of `burst` intervals (`Rate.burst`, or `limit` when 0)
    that lets that many units through at once. The key stores the theoretical arrival time TAT
    (starting at now). A request of `cost` units is admitted iff
    `max(TAT, now) + cost * interval - burst * interval <= now`; it then moves TAT forward by
    `cost * interval`; denied requests move nothing. The admitted counts equal `TokenBucket`'s
    with the same burst (a burst of `burst`, then one per interval); the state is one string.
    `remaining` is `floor((now + burst * interval - TAT) / interval)`; `retry_after_s` is when
    the request would be admitted (`inf` when `cost` exceeds the burst); `reset_after_s` is
    `TAT - now`. A limit of 0 denies all; a peek (cost 0) is admitted iff one unit would be.

    Quota grants (`GrantingLimiter`): a grant takes `min(wanted, remaining)` units; unused units
    given back move TAT back, never before now. `valid_s` is `inf`, with the same bound on
    overshoot as `TokenBucket`'s.
    """

    def script(self) -> str:
        """Return the Lua source."""
        return _SCRIPT

    def arguments(self, rate: Rate, cost: int) -> Sequence[int | float | str]:
        """Encode `limit, period_us, cost[, burst]`; raises ValidationError when out of range."""
        size = capacity(rate)
        arguments = standard_arguments(rate, cost)
        return (*arguments, size) if rate.burst else arguments

    def decision(self, rate: Rate, cost: int, reply: Any) -> LimitDecision:
        """Decode `{allowed, units left, retry_us (-1: never), reset_us, granted}`."""
        allowed, remaining, retry_us, reset_us, _ = integers(reply, 5)
        return LimitDecision(
            allowed=bool(allowed),
            limit=rate.limit,
            remaining=max(remaining, 0),
            retry_after_s=float("inf") if retry_us < 0 else seconds(retry_us),
            reset_after_s=seconds(reset_us),
        )
