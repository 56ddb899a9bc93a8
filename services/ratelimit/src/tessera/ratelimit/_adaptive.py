from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from tessera.core import BackendError
from tessera.core.redis import redis_errors
from tessera.ratelimit._config import AdaptiveRule

# One Redis hash per adaptive descriptor, shared by every replica: l the limit (a float),
# s and g the short- and long-term moving averages of latency (us), e the moving average of
# failures, n the samples, d when the last aimd decrease happened (us).
# ARGV: strategy (1 aimd, 2 gradient), min, max, initial, max_error_ratio, smoothing,
# target_latency_us, increase, decrease, cooldown_us, failed (0/1), latency_us.
# Reply: {limit * 1000, short latency us, long latency us, error ratio * 1e6, samples}.
_REPORT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local strategy = tonumber(ARGV[1])
local low, high, initial = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local max_error, alpha = tonumber(ARGV[5]), tonumber(ARGV[6])
local target, increase = tonumber(ARGV[7]), tonumber(ARGV[8])
local decrease, cooldown = tonumber(ARGV[9]), tonumber(ARGV[10])
local failed, latency = tonumber(ARGV[11]), tonumber(ARGV[12])
local h = redis.call('HMGET', KEYS[1], 'l', 's', 'g', 'e', 'n', 'd')
local limit = tonumber(h[1]) or initial
local short, long = tonumber(h[2]), tonumber(h[3])
local errors, samples, last = tonumber(h[4]) or 0, tonumber(h[5]) or 0, tonumber(h[6]) or 0
if short == nil then
  short, long = latency, latency
else
  short = short + alpha * (latency - short)
  -- the long-term average moves ten times slower: the baseline recent latency is judged by
  long = long + alpha / 10 * (latency - long)
end
errors = errors + alpha * (failed - errors)
samples = samples + 1
if strategy == 1 then
  if errors > max_error or short > target then
    if now - last >= cooldown then
      limit = limit * decrease
      last = now
    end
  else
    -- about +increase per `limit` good outcomes, as TCP grows its window once per round trip
    limit = limit + increase / limit
  end
else
  -- Netflix's Gradient2: shrink when recent latency exceeds the baseline (tolerance 1.5),
  -- grow by a queue of sqrt(limit) otherwise; failures above max_error halve the gradient
  local gradient = math.max(0.5, math.min(1.0, 1.5 * long / math.max(short, 1)))
  if errors > max_error then gradient = 0.5 end
  limit = (1 - alpha) * limit + alpha * (limit * gradient + math.sqrt(limit))
end
limit = math.max(low, math.min(high, limit))
redis.call('HSET', KEYS[1], 'l', string.format('%.6f', limit), 's', string.format('%.0f', short),
  'g', string.format('%.0f', long), 'e', string.format('%.9f', errors), 'n', samples,
  'd', string.format('%.0f', last))
redis.call('PEXPIRE', KEYS[1], 86400000)
return {math.floor(limit * 1000), math.floor(short), math.floor(long),
  math.floor(errors * 1000000), samples}
"""

_US_PER_S = 1_000_000
#: Bound of the per-replica cache of read limits (adaptive descriptors may carry any value).
_MAX_CACHED = 100_000


@dataclass(frozen=True, slots=True)
class AdaptiveState:
    """An adaptive limit's state, shared by every replica.

    Attributes:
        limit: The limit in force (whole units), within the rule's bounds.
        latency_s: Moving average of recent latency (0 before any sample).
        baseline_latency_s: The ten times slower moving average (gradient's baseline).
        error_ratio: Moving average of failures, in [0, 1].
        samples: Outcomes reported so far.
        strategy: The rule's strategy.

    """

    limit: int
    latency_s: float
    baseline_latency_s: float
    error_ratio: float
    samples: int
    strategy: str


class AdaptiveStore:
    """Adaptive limits in Redis, moved atomically by reported outcomes; read through a cache.

    Each outcome is one Lua script on the descriptor's hash (every replica agrees on the
    limit). Checks read the limit through this replica's cache, refreshed after `refresh_s`
    (one HMGET per stale key), so an adaptive rule costs no extra round trip on most checks and
    a replica follows another's changes within `refresh_s`.

    Concurrency: one event loop.

    Args:
        redis: The client.
        refresh_s: How long a read limit is trusted.
        clock: Monotonic seconds.

    """

    def __init__(
        self, redis: Redis, refresh_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._redis = redis
        self._report = redis.register_script(_REPORT)
        self._refresh_s = refresh_s
        self._clock = clock
        self._cache: dict[str, tuple[float, AdaptiveState]] = {}

    async def current(self, targets: Sequence[tuple[str, AdaptiveRule]]) -> list[AdaptiveState]:
        """Return the state of each `(key, rule)`, from the cache when fresh.

        Raises:
            BackendError: Redis failed or timed out (retryable).

        """
        now = self._clock()
        stale = [
            (key, rule)
            for key, rule in targets
            if key not in self._cache or now - self._cache[key][0] >= self._refresh_s
        ]
        if stale:
            with redis_errors("adaptive limit read"):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key, _ in stale:
                        pipe.hmget(key, ["l", "s", "g", "e", "n"])
                    replies = await pipe.execute()
            for (key, rule), reply in zip(stale, replies, strict=True):
                self._remember(key, now, _read(reply, rule))
        return [self._cache[key][1] for key, _ in targets]

    async def report(
        self, key: str, rule: AdaptiveRule, *, success: bool, latency_s: float
    ) -> AdaptiveState:
        """Move the limit by one outcome and return the state after it.

        Raises:
            BackendError: Redis failed or timed out (retryable).

        """
        arguments: list[int | str] = [
            1 if rule.strategy == "aimd" else 2,
            rule.min_limit,
            rule.max_limit,
            rule.initial_limit,
            repr(rule.max_error_ratio),
            repr(rule.smoothing),
            round(rule.target_latency_s * _US_PER_S),
            repr(rule.increase),
            repr(rule.decrease),
            round(rule.cooldown_s * _US_PER_S),
            0 if success else 1,
            round(latency_s * _US_PER_S),
        ]
        with redis_errors("adaptive limit report"):
            reply = await self._report(keys=[key], args=arguments)
        if not isinstance(reply, list) or len(reply) != 5:
            raise BackendError(f"adaptive script replied {reply!r}", backend="redis")
        limit, short, long, errors, samples = (int(value) for value in reply)
        state = AdaptiveState(
            limit=limit // 1000,
            latency_s=short / _US_PER_S,
            baseline_latency_s=long / _US_PER_S,
            error_ratio=errors / _US_PER_S,
            samples=samples,
            strategy=rule.strategy,
        )
        self._remember(key, self._clock(), state)
        return state

    def _remember(self, key: str, read_at: float, state: AdaptiveState) -> None:
        self._cache.pop(key, None)
        self._cache[key] = (read_at, state)
        if len(self._cache) > _MAX_CACHED:
            # dicts keep insertion order: the first entry is the one read longest ago
            del self._cache[next(iter(self._cache))]

    def forget(self, keys: Sequence[str]) -> None:
        """Drop cached states (after a Reset)."""
        for key in keys:
            self._cache.pop(key, None)


def _read(reply: list[bytes | None], rule: AdaptiveRule) -> AdaptiveState:
    limit, short, long, errors, samples = (None if v is None else float(v) for v in reply)
    return AdaptiveState(
        limit=int(rule.initial_limit if limit is None else limit),
        latency_s=(short or 0.0) / _US_PER_S,
        baseline_latency_s=(long or 0.0) / _US_PER_S,
        error_ratio=errors or 0.0,
        samples=int(samples or 0),
        strategy=rule.strategy,
    )
