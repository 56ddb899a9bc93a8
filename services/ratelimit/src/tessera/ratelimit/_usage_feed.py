"""The usage feed: per-rule decision rates of the last minutes, published for adaptive limits.

The `aggregate_usage` job sums the usage buckets (`_usage`) of the last `window_s` seconds per
domain and rule and replaces each domain's feed hash with the rates; the adaptive controller
(`_adaptive`) reads its rule's rates in the same Lua script that moves the limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

from redis.asyncio import Redis

from tessera.core import BackendError
from tessera.core.redis import redis_errors
from tessera.ratelimit._usage import USAGE_BUCKET_S, RuleUsage, read_usage

#: Prefix of the feed hashes: `<prefix>{<domain>}` (docs/keyspace.md).
FEED_PREFIX = "tessera:ratelimit:usage-feed:"
#: The field every published feed holds (the window it covers, in seconds): a feed without the
#: rule's field means the rule decided nothing in the window. Rule labels never start with \x1f.
FEED_WINDOW_FIELD = "\x1fwindow"
#: A feed lives three job periods: when the job stops, adaptive limits move by outcomes alone.
FEED_TTL_S = 180
#: The period the job's rates cover by default (at least; see `feed_span_s`).
DEFAULT_FEED_WINDOW_S = 120.0

# Replaces one domain's feed atomically. ARGV: ttl_s, then field, value, field, value...
_REPLACE = """
redis.call('DEL', KEYS[1])
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return (#ARGV - 1) / 2
"""


def usage_feed_key(domain: str) -> str:
    """Return the Redis hash of `domain`'s usage feed (hash-tagged by the domain)."""
    return f"{FEED_PREFIX}{{{domain}}}"


@dataclass(frozen=True, slots=True)
class RuleRates:
    """Decisions per second of one rule over the feed's window.

    Attributes:
        offered_per_s: Every decision counted (admitted, denied, shadow-denied, failure policy):
            the demand on the rule.
        admitted_per_s: Decisions within the limit.
        denied_per_s: Decisions over the limit (deny list and open breaker included).
        window_s: The time the rates are averaged over.

    """

    offered_per_s: float
    admitted_per_s: float
    denied_per_s: float
    window_s: float

    def encode(self) -> str:
        """Return the feed value: the four numbers separated by spaces, offered first."""
        return (
            f"{self.offered_per_s:.6f} {self.admitted_per_s:.6f} "
            f"{self.denied_per_s:.6f} {self.window_s:.3f}"
        )

    @classmethod
    def decode(cls, text: str) -> RuleRates:
        """Parse `encode`'s output.

        Raises:
            BackendError: The text is not a feed value (not retryable: a foreign writer).

        """
        parts = text.split()
        try:
            offered, admitted, denied, window = (float(part) for part in parts)
        except ValueError:
            raise BackendError(
                f"usage feed value {text!r} is malformed", backend="redis", retryable=False
            ) from None
        return cls(offered, admitted, denied, window)


def feed_span_s(window_s: float, now_s: float) -> float:
    """Return the time the buckets read for `window_s` cover: back to the first one's start.

    The usage buckets are whole minutes, so the rates cover from the start of the minute
    `window_s` ago until now: between `window_s` and `window_s + 60` seconds.
    """
    first = math.floor((now_s - window_s) / USAGE_BUCKET_S)
    return now_s - first * USAGE_BUCKET_S


def rule_rates(usage: Iterable[RuleUsage], span_s: float) -> dict[str, dict[str, RuleRates]]:
    """Turn decision counts over `span_s` seconds into rates per domain and rule label."""
    rates: dict[str, dict[str, RuleRates]] = {}
    for row in usage:
        rates.setdefault(row.domain, {})[row.rule] = RuleRates(
            offered_per_s=row.total / span_s,
            admitted_per_s=row.admitted / span_s,
            denied_per_s=row.denied / span_s,
            window_s=span_s,
        )
    return rates


async def publish_usage_feed(
    redis: Redis,
    *,
    window_s: float = DEFAULT_FEED_WINDOW_S,
    domains: Iterable[str] = (),
    now_s: float | None = None,
) -> dict[str, dict[str, RuleRates]]:
    """Replace the feed of every domain with usage in the window, and of `domains`, atomically.

    A domain of `domains` without usage in the window gets a feed holding only its window:
    its rules decided nothing (idle). One round trip for the read, one for the writes.

    Returns:
        The rates published, per domain and rule label.

    Raises:
        BackendError: Redis failed.

    """
    now = time.time() if now_s is None else now_s
    span = feed_span_s(window_s, now)
    rates = rule_rates(await read_usage(redis, since_s=window_s, now_s=now), span)
    for domain in domains:
        rates.setdefault(domain, {})
    replace = redis.register_script(_REPLACE)
    with redis_errors("rate limit usage feed"):
        async with redis.pipeline(transaction=False) as pipe:
            for domain, rules in rates.items():
                fields: list[str | float] = [FEED_WINDOW_FIELD, f"{span:.3f}"]
                for label, rule in rules.items():
                    fields += [label, rule.encode()]
                await replace(
                    keys=[usage_feed_key(domain)], args=[FEED_TTL_S, *fields], client=pipe
                )
            await pipe.execute()
    return rates
