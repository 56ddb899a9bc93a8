from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis

from tessera.core import BackendError
from tessera.core.redis import redis_errors
from tessera.ratelimit._config import BreakerStrategy, CircuitBreakerRule

BreakerState = Literal["closed", "open", "half_open"]
_STATES: tuple[BreakerState, ...] = ("closed", "open", "half_open")

# One Redis hash per breaker, so that every replica sees one state and each transition is atomic:
# s state (0 closed, 1 open, 2 half-open), o when the state began (us), r the ring buffer of the
# latest outcomes as text ("1" bad, "0" good), p its next slot, n outcomes in it, b bad ones,
# pi probes admitted half-open, ps probe successes. Time is the Redis server's.
_PRELUDE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local stamp = string.format('%.0f', now)
local open_us = tonumber(ARGV[1])
local probes = tonumber(ARGV[2])
local h = redis.call('HMGET', KEYS[1], 's', 'o', 'pi', 'ps', 'n', 'b', 'r', 'p')
local state = tonumber(h[1]) or 0
local since = tonumber(h[2]) or 0
local issued = tonumber(h[3]) or 0
local succeeded = tonumber(h[4]) or 0
local function clear_window(new_state)
  redis.call('HSET', KEYS[1], 's', new_state, 'o', stamp, 'r', '', 'p', 0, 'n', 0, 'b', 0,
    'pi', 0, 'ps', 0)
  redis.call('PEXPIRE', KEYS[1], 86400000)
end
"""

# ARGV: open_us, probes, take (1: a probe slot is taken when half-open; 0: a peek, no write).
# Reply: {allowed, state, outcomes in window, bad ones, retry_us}.
_ADMIT = (
    _PRELUDE
    + """
local take = ARGV[3] == '1'
-- open long enough, or half-open with probes whose outcomes never came: (re)offer probe slots
if (state == 1 or state == 2) and now >= since + open_us then
  state, since, issued = 2, now, 0
  if take then
    redis.call('HSET', KEYS[1], 's', 2, 'o', stamp, 'pi', 0, 'ps', 0)
    redis.call('PEXPIRE', KEYS[1], 86400000)
  end
end
local allowed, retry = 1, 0
if state == 1 then
  allowed, retry = 0, since + open_us - now
elseif state == 2 then
  if issued < probes then
    if take then redis.call('HINCRBY', KEYS[1], 'pi', 1) end
  else
    allowed, retry = 0, since + open_us - now
  end
end
return {allowed, state, tonumber(h[5]) or 0, tonumber(h[6]) or 0, math.ceil(retry)}
"""
)

# ARGV: open_us, probes, ratio (1) or count (0) strategy, threshold, window, min_calls, bad (0/1).
# Reply: {state after, outcomes in window, bad ones}.
_REPORT = (
    _PRELUDE
    + """
local ratio = ARGV[3] == '1'
local threshold = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local min_calls = tonumber(ARGV[6])
local bad = ARGV[7] == '1'
if state == 1 and now >= since + open_us then
  state, succeeded = 2, 0
  redis.call('HSET', KEYS[1], 's', 2, 'o', stamp, 'pi', 0, 'ps', 0)
end
if state == 1 then
  -- calls admitted before the breaker opened: their outcomes change nothing
  return {1, 0, 0}
end
if state == 2 then
  if bad then
    clear_window(1)
    return {1, 0, 0}
  end
  succeeded = succeeded + 1
  if succeeded >= probes then
    clear_window(0)
    return {0, 0, 0}
  end
  redis.call('HSET', KEYS[1], 'ps', succeeded)
  return {2, 0, 0}
end
local ring = h[7] or ''
local slot = tonumber(h[8]) or 0
local count = tonumber(h[5]) or 0
local bad_count = tonumber(h[6]) or 0
local mark = '0'
if bad then mark = '1'; bad_count = bad_count + 1 end
if count < window then
  ring = ring .. mark
  count = count + 1
else
  if string.sub(ring, slot + 1, slot + 1) == '1' then bad_count = bad_count - 1 end
  ring = string.sub(ring, 1, slot) .. mark .. string.sub(ring, slot + 2)
end
slot = (slot + 1) % window
local trip = false
if count >= min_calls then
  if ratio then trip = bad_count >= threshold * count else trip = bad_count >= threshold end
end
if trip then
  clear_window(1)
  return {1, count, bad_count}
end
redis.call('HSET', KEYS[1], 's', 0, 'r', ring, 'p', slot, 'n', count, 'b', bad_count)
redis.call('PEXPIRE', KEYS[1], 86400000)
return {0, count, bad_count}
"""
)

_US_PER_S = 1_000_000


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    """A circuit breaker's state as one replica saw it.

    Attributes:
        allowed: Whether a call may go to the target now (closed, or a probe slot half-open).
        state: `closed`, `open` or `half_open`.
        calls: Outcomes in the ring buffer (closed only; a transition empties it).
        bad_calls: Bad outcomes among them (failures, or slow calls for `slow_call_ratio`).
        retry_after_s: When denied, how long until probes may go through.
        strategy: The rule's strategy.

    """

    allowed: bool
    state: BreakerState
    calls: int
    bad_calls: int
    retry_after_s: float
    strategy: BreakerStrategy


class BreakerStore:
    """Circuit-breaker state in Redis, shared by every replica: closed -> open -> half-open.

    Closed, every call passes and each reported outcome enters a ring buffer of the latest
    `window` outcomes; once it holds `min_calls`, the breaker opens when the rule's strategy says
    so. Open, calls are denied for `open_s`, and outcomes reported meanwhile (of calls admitted
    before) are ignored. Then it is half-open: `half_open_probes` calls are admitted as probes;
    that many good outcomes close it (with an empty window), one bad outcome opens it again. If
    probes' outcomes do not come back within `open_s`, new probe slots are offered. Every
    transition is one Lua script on one hash, atomic across replicas, timed by Redis's clock.

    Concurrency: safe for any number of tasks of the event loop that owns `redis`.

    Args:
        redis: The client the scripts run on.

    """

    def __init__(self, redis: Redis) -> None:
        self._admit = redis.register_script(_ADMIT)
        self._report = redis.register_script(_REPORT)

    async def admit(
        self, targets: Sequence[tuple[str, CircuitBreakerRule]], *, take: bool = True
    ) -> list[BreakerStatus]:
        """Decide for each `(key, rule)` whether a call may go through now.

        Args:
            targets: The breakers' Redis keys and rules.
            take: Whether a half-open admission takes a probe slot; False peeks (writes nothing).

        Raises:
            BackendError: Redis failed or timed out (retryable).

        """
        with redis_errors("circuit breaker admission"):
            replies = await asyncio.gather(
                *(
                    self._admit(
                        keys=[key],
                        args=[_micros(rule.open_s), rule.half_open_probes, int(take)],
                    )
                    for key, rule in targets
                )
            )
        return [
            _status(reply, rule.strategy) for reply, (_, rule) in zip(replies, targets, strict=True)
        ]

    async def report(
        self, key: str, rule: CircuitBreakerRule, *, success: bool, latency_s: float
    ) -> BreakerStatus:
        """Record one call's outcome and return the breaker's state after it.

        A call is bad when it failed (`error_ratio`, `error_count`) or took at least
        `slow_call_s` (`slow_call_ratio`, whatever its success).

        Raises:
            BackendError: Redis failed or timed out (retryable).

        """
        slow = rule.strategy == "slow_call_ratio"
        bad = latency_s >= rule.slow_call_s if slow else not success
        arguments: list[int | str] = [
            _micros(rule.open_s),
            rule.half_open_probes,
            int(rule.strategy != "error_count"),
            repr(rule.threshold),
            rule.window,
            rule.min_calls,
            int(bad),
        ]
        with redis_errors("circuit breaker report"):
            reply = await self._report(keys=[key], args=arguments)
        state, calls, bad_calls = _integers(reply, 3)
        # After an outcome only an open breaker certainly denies the next call.
        name = _STATES[state]
        return BreakerStatus(name != "open", name, calls, bad_calls, 0.0, rule.strategy)


def _micros(seconds: float) -> int:
    return round(seconds * _US_PER_S)


def _integers(reply: object, size: int) -> list[int]:
    if not isinstance(reply, list) or len(reply) != size:
        raise BackendError(f"breaker script replied {reply!r}", backend="redis", retryable=False)
    return [int(value) for value in reply]


def _status(reply: object, strategy: BreakerStrategy) -> BreakerStatus:
    allowed, state, calls, bad_calls, retry_us = _integers(reply, 5)
    return BreakerStatus(
        allowed=bool(allowed),
        state=_STATES[state],
        calls=calls,
        bad_calls=bad_calls,
        retry_after_s=max(retry_us, 0) / _US_PER_S,
        strategy=strategy,
    )
