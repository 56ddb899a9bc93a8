from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from tessera.core import BackendError
from tessera.core.plugins import LIMITERS, ReleasingLimiter, load_plugins
from tessera.core.redis import redis_errors
from tessera.ratelimit._config import AdaptiveRule
from tessera.ratelimit._match import Match
from tessera.ratelimit._usage_feed import FEED_WINDOW_FIELD, RuleRates, usage_feed_key

# One Redis hash per adaptive descriptor, shared by every replica: l the limit (a float),
# s and g the short- and long-term moving averages of latency (us), e the moving average of
# failures, n the samples, d when the last aimd decrease happened (us); and what the last step
# saw of the usage feed: f its rule's rates ('' without a feed), u the utilisation (-1 without
# a feed), h 1 when the step's increase was held back.
# KEYS: the descriptor's hash, the domain's usage feed (one slot: both hash-tagged by domain).
# ARGV: strategy (1 aimd, 2 gradient), min, max, initial, max_error_ratio, smoothing,
# target_latency_us, increase, decrease, cooldown_us, failed (0/1), latency_us, the rule's
# label, the feed's window field, the demand horizon us (0: units in flight, estimated as
# offered rate x latency), the utilisation below which increases are held.
# Reply: {limit * 1000, short latency us, long latency us, error ratio * 1e6, samples,
# utilisation * 1e6 (-1: no feed), held (0/1), the rule's feed value}.
_REPORT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local strategy = tonumber(ARGV[1])
local low, high, initial = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local max_error, alpha = tonumber(ARGV[5]), tonumber(ARGV[6])
local target, increase = tonumber(ARGV[7]), tonumber(ARGV[8])
local decrease, cooldown = tonumber(ARGV[9]), tonumber(ARGV[10])
local failed, latency = tonumber(ARGV[11]), tonumber(ARGV[12])
local horizon, hold_below = tonumber(ARGV[15]), tonumber(ARGV[16])
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
-- utilisation: the rule's demand over the last window against the limit in force; demand is
-- the offered rate times the period (a rate), or times the latency (units in flight, Little)
local feed = redis.call('HMGET', KEYS[2], ARGV[13], ARGV[14])
local record, utilisation = '', -1
if feed[2] then
  record = feed[1] or '0 0 0 ' .. feed[2]
  local o, a, x, w = string.match(record, '^(%S+) (%S+) (%S+) (%S+)$')
  local offered = tonumber(o)
  if offered and tonumber(a) and tonumber(x) and tonumber(w) then
    if horizon == 0 then horizon = short end
    utilisation = offered * horizon / 1000000 / math.max(limit, 1)
  else
    -- not the job's writing: ignored, as if there were no feed
    record = ''
  end
end
local before = limit
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
-- a limit the traffic does not use is not raised (concurrency-limits' app-limited check)
local held = 0
if utilisation >= 0 and utilisation < hold_below and limit > before then
  limit = before
  held = 1
end
limit = math.max(low, math.min(high, limit))
redis.call('HSET', KEYS[1], 'l', string.format('%.6f', limit), 's', string.format('%.0f', short),
  'g', string.format('%.0f', long), 'e', string.format('%.9f', errors), 'n', samples,
  'd', string.format('%.0f', last), 'f', record, 'u', string.format('%.6f', utilisation),
  'h', held)
redis.call('PEXPIRE', KEYS[1], 86400000)
return {math.floor(limit * 1000), math.floor(short), math.floor(long),
  math.floor(errors * 1000000), samples, math.floor(utilisation * 1000000), held, record}
"""

_US_PER_S = 1_000_000
#: Below this utilisation of the limit in force an outcome never raises it (Netflix
#: concurrency-limits: AIMD grows only when in flight >= limit / 2, Gradient2 holds when app
#: limited below limit / 2).
HOLD_INCREASE_BELOW = 0.5
_FIELDS = ["l", "s", "g", "e", "n", "f", "u", "h"]
#: Bound of the per-replica cache of read limits (adaptive descriptors may carry any value).
_MAX_CACHED = 100_000


@dataclass(frozen=True, slots=True)
class AdaptiveUsage:
    """What the last step of an adaptive limit saw of its rule's aggregated usage.

    Attributes:
        rates: The rule's decision rates over the feed's window (all 0 when it decided nothing).
        utilisation: Demand over the limit before the step: `offered_per_s * period` for a
            rate, `offered_per_s * latency` (units in flight) for a concurrency limit.
        increase_held: The step would have raised the limit, but the utilisation was below
            `HOLD_INCREASE_BELOW`, so the limit stayed.

    """

    rates: RuleRates
    utilisation: float
    increase_held: bool


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
        usage: The usage the last step saw; None before any outcome, or when no usage feed
            was published (the `aggregate_usage` job is not running): the limit then moved by
            outcomes alone.

    """

    limit: int
    latency_s: float
    baseline_latency_s: float
    error_ratio: float
    samples: int
    strategy: str
    usage: AdaptiveUsage | None = None


class AdaptiveStore:
    """Adaptive limits in Redis, moved atomically by reported outcomes; read through a cache.

    Each outcome is one Lua script on the descriptor's hash (every replica agrees on the
    limit), which also reads the rule's rates from the domain's usage feed and holds back an
    increase of a limit the traffic does not use. Checks read the limit through this replica's
    cache, refreshed after `refresh_s` (one HMGET per stale key), so an adaptive rule costs no
    extra round trip on most checks and a replica follows another's changes within `refresh_s`.

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
                        pipe.hmget(key, _FIELDS)
                    replies = await pipe.execute()
            for (key, rule), reply in zip(stale, replies, strict=True):
                self._remember(key, now, _read(reply, rule))
        return [self._cache[key][1] for key, _ in targets]

    async def report(
        self,
        key: str,
        rule: AdaptiveRule,
        *,
        success: bool,
        latency_s: float,
        source: Match | None = None,
    ) -> AdaptiveState:
        """Move the limit by one outcome and return the state after it.

        Args:
            key: The descriptor's adaptive hash (`tessera:ratelimit:adaptive:{<domain>}:...`).
            rule: Its adaptive rule.
            success: Whether the protected call succeeded.
            latency_s: How long it took.
            source: The match that found `rule`: names the rule's usage in the feed (its name,
                else its path) and its algorithm. None reads no usage.

        Raises:
            BackendError: Redis failed or timed out (retryable).

        """
        label, horizon_us = "", 0
        if source is not None and source.rule is not None and source.rate_limit is not None:
            rate = source.rate_limit
            label = rate.name or source.rule.path
            if not _in_flight(rate.algorithm):
                horizon_us = round(rate.period_s * _US_PER_S)
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
            label,
            # without a label no field can match: read nothing, as without a feed
            FEED_WINDOW_FIELD if label else "\x1fnone",
            horizon_us,
            repr(HOLD_INCREASE_BELOW),
        ]
        with redis_errors("adaptive limit report"):
            reply = await self._report(keys=[key, _feed_key(key)], args=arguments)
        if not isinstance(reply, list) or len(reply) != 8:
            raise BackendError(f"adaptive script replied {reply!r}", backend="redis")
        limit, short, long, errors, samples, utilisation, held = (int(v) for v in reply[:7])
        state = AdaptiveState(
            limit=limit // 1000,
            latency_s=short / _US_PER_S,
            baseline_latency_s=long / _US_PER_S,
            error_ratio=errors / _US_PER_S,
            samples=samples,
            strategy=rule.strategy,
            usage=_usage(reply[7], utilisation / _US_PER_S, held),
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
    limit, short, long, errors, samples = (None if v is None else float(v) for v in reply[:5])
    record, utilisation, held = reply[5:]
    return AdaptiveState(
        limit=int(rule.initial_limit if limit is None else limit),
        latency_s=(short or 0.0) / _US_PER_S,
        baseline_latency_s=(long or 0.0) / _US_PER_S,
        error_ratio=errors or 0.0,
        samples=int(samples or 0),
        strategy=rule.strategy,
        usage=_usage(record, -1.0 if utilisation is None else float(utilisation), held),
    )


def _usage(
    record: bytes | str | None, utilisation: float, held: bytes | int | None
) -> AdaptiveUsage | None:
    # What the script stored of the feed; no record, or a negative utilisation: no feed was read.
    if not record or utilisation < 0:
        return None
    text = record.decode() if isinstance(record, bytes) else record
    return AdaptiveUsage(RuleRates.decode(text), utilisation, bool(int(held or 0)))


def _feed_key(key: str) -> str:
    # The adaptive key's hash tag is its domain (docs/keyspace.md): the feed shares its slot.
    start = key.index("{")
    return usage_feed_key(key[start + 1 : key.index("}", start)])


@functools.cache
def _in_flight(algorithm: str) -> bool:
    # A limiter whose admissions hold leases limits units in flight, not a rate per period.
    plugin = load_plugins(LIMITERS).get(algorithm)
    return isinstance(plugin.create(), ReleasingLimiter)
