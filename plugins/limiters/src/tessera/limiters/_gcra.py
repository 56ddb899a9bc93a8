from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tessera.core.plugins import LimitDecision, Rate
from tessera.limiters._script import PRELUDE, integers, seconds, standard_arguments

_SCRIPT = (
    PRELUDE
    + """
if limit == 0 then return {0, 0, -1, 0} end
local interval = period / limit
local tat = tonumber(redis.call('GET', KEYS[1])) or now
tat = math.max(tat, now)
local need = math.max(cost, 1)
local new_tat = tat + need * interval
local allow_at = new_tat - period
local allowed = 0
-- the tolerance absorbs rounding when period / limit is not a whole number of microseconds
if allow_at <= now + 1e-3 then allowed = 1 end
if allowed == 1 and cost > 0 then
  tat = tat + cost * interval
  redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
end
local retry = 0
if allowed == 0 then
  if need > limit then retry = -1 else retry = allow_at - now end
end
local remaining = math.floor((now + period - tat) / interval + 1e-6)
return {allowed, remaining, math.ceil(retry), math.ceil(tat - now)}
"""
)


class Gcra:
    """The generic cell rate algorithm: a token bucket kept as one timestamp.

    Exact semantics: each unit is due `period / limit` seconds after the previous one (the
    emission interval), with a tolerance that lets `limit` units through at once. The key stores
    the theoretical arrival time TAT (starting at now). A request of `cost` units is admitted iff
    `max(TAT, now) + cost * interval - period <= now`; it then moves TAT forward by
    `cost * interval`; denied requests move nothing. The admitted counts equal `TokenBucket`'s
    (a burst of `limit`, then one per interval); the state is one string. `remaining` is
    `floor((now + period - TAT) / interval)`; `retry_after_s` is when the request would be
    admitted (`inf` when `cost` exceeds `limit`); `reset_after_s` is `TAT - now`. A limit of 0
    denies all; a peek (cost 0) is admitted iff one unit would be.
    """

    def script(self) -> str:
        """Return the Lua source."""
        return _SCRIPT

    def arguments(self, rate: Rate, cost: int) -> Sequence[int | float | str]:
        """Encode `limit, period_us, cost`; raises ValidationError when out of range."""
        return standard_arguments(rate, cost)

    def decision(self, rate: Rate, cost: int, reply: Any) -> LimitDecision:
        """Decode `{allowed, units left, retry_us (-1: never), reset_us}`."""
        allowed, remaining, retry_us, reset_us = integers(reply, 4)
        return LimitDecision(
            allowed=bool(allowed),
            limit=rate.limit,
            remaining=max(remaining, 0),
            retry_after_s=float("inf") if retry_us < 0 else seconds(retry_us),
            reset_after_s=seconds(reset_us),
        )
