from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tessera.core.plugins import LimitDecision, Rate
from tessera.limiters._script import PRELUDE, integers, seconds, standard_arguments

_SCRIPT = (
    PRELUDE
    + """
local window_end = (math.floor(now / period) + 1) * period
local count
if cost > 0 then
  count = redis.call('INCRBY', KEYS[1], cost)
  -- the first hit of a window creates the key: it expires exactly when the window ends
  if count == cost then
    redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', math.ceil(window_end / 1000)))
  end
else
  count = tonumber(redis.call('GET', KEYS[1])) or 0
end
return {count, window_end - now}
"""
)


class FixedWindow:
    """Fixed windows aligned to the epoch, counting every hit: envoyproxy/ratelimit's algorithm.

    Exact semantics: time (the Redis server's) is cut into windows `[k * period, (k+1) * period)`
    counted from the Unix epoch. Each evaluation adds `cost` to the window's counter whether it is
    admitted or not (as envoyproxy/ratelimit's INCRBY does) and is admitted iff the counter after
    the addition is <= `limit`. So in one window exactly `limit` unit-cost requests are admitted,
    and a request of cost > remaining is denied and still counted. The counter is a string (INCRBY)
    that expires at the end of the window its first hit fell in (PEXPIREAT). `remaining` is
    `max(limit - counter, 0)`; `retry_after_s` and `reset_after_s` are the time left in the window.
    A peek (cost 0) is admitted iff the counter is below `limit`.
    """

    def script(self) -> str:
        """Return the Lua source."""
        return _SCRIPT

    def arguments(self, rate: Rate, cost: int) -> Sequence[int | float | str]:
        """Encode `limit, period_us, cost`; raises ValidationError when out of range."""
        return standard_arguments(rate, cost)

    def decision(self, rate: Rate, cost: int, reply: Any) -> LimitDecision:
        """Decode `{counter, microseconds to the window's end}`."""
        count, reset_us = integers(reply, 2)
        allowed = count <= rate.limit if cost > 0 else count < rate.limit
        reset = seconds(reset_us)
        return LimitDecision(
            allowed=allowed,
            limit=rate.limit,
            remaining=max(rate.limit - count, 0),
            retry_after_s=0.0 if allowed else reset,
            reset_after_s=reset,
        )
