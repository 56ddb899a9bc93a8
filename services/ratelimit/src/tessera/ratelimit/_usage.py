from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import structlog
from redis.asyncio import Redis

from tessera.core import BackendError
from tessera.core.redis import redis_errors

_log = structlog.get_logger("tessera.ratelimit")

#: Prefix of the per-minute usage hashes: `<prefix>{<domain>}:<unix minute>` (docs/keyspace.md).
USAGE_PREFIX = "tessera:ratelimit:usage:"
#: Length of one usage bucket.
USAGE_BUCKET_S = 60
#: How long a usage bucket is kept: reports look back at most this far.
USAGE_TTL_S = 2 * 86_400
#: What a decision counts as in the usage buckets.
Outcome = Literal["admitted", "denied", "shadow_denied", "unavailable"]
OUTCOMES: tuple[Outcome, ...] = ("admitted", "denied", "shadow_denied", "unavailable")
# Joins a rule's label and an outcome in a hash field; labels are YAML names or paths.
_SEPARATOR = "\x1f"


_PLAIN: Mapping[str, Outcome] = {"within limit": "admitted", "over limit": "denied"}


def usage_key(domain: str, minute: int) -> str:
    """Return the Redis hash of `domain`'s usage in the minute starting at `minute * 60`."""
    return f"{USAGE_PREFIX}{{{domain}}}:{minute}"


def outcome(over_limit: bool, reason: str) -> Outcome:
    """Classify a decision: admitted, denied, denied-in-shadow-mode or Redis unavailable."""
    if reason.startswith("redis unavailable"):
        return "unavailable"
    if reason.startswith("shadow mode"):
        return "shadow_denied"
    return "denied" if over_limit else "admitted"


class UsageRecorder:
    """Counts this replica's decisions per domain, rule and outcome, and flushes them to Redis.

    Counting is a dictionary increment on the request path; `run` adds the counts to the
    current minute's hash of each domain (HINCRBY, one pipeline) every `flush_s`. Counts of a
    failed flush are kept for the next one, so Redis being down loses nothing but time
    precision. Several replicas add to the same hashes.

    Concurrency: one event loop.

    Args:
        redis: Where the usage hashes live.
        flush_s: Seconds between flushes.

    """

    def __init__(self, redis: Redis, flush_s: float) -> None:
        self._redis = redis
        self._flush_s = flush_s
        self._counts: Counter[tuple[str, str, Outcome]] = Counter()

    def record(self, domain: str, decisions: Iterable[tuple[str, bool, str]]) -> None:
        """Count decisions given as `(rule label, over_limit, reason)`; unlabelled ones aren't."""
        # Counter.update counts a list in C; most decisions are plainly admitted or denied.
        self._counts.update(
            [
                (domain, label, _PLAIN.get(reason) or outcome(over_limit, reason))
                for label, over_limit, reason in decisions
                if label
            ]
        )

    async def flush(self) -> int:
        """Add the counts so far to Redis; returns how many fields were written.

        Raises:
            BackendError: Redis failed; the counts are kept for the next flush.

        """
        counts, self._counts = self._counts, Counter()
        if not counts:
            return 0
        minute = int(time.time() // USAGE_BUCKET_S)
        try:
            with redis_errors("rate limit usage flush"):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for (domain, label, kind), count in counts.items():
                        pipe.hincrby(usage_key(domain, minute), f"{label}{_SEPARATOR}{kind}", count)
                    for domain in {domain for domain, _, _ in counts}:
                        pipe.expire(usage_key(domain, minute), USAGE_TTL_S)
                    await pipe.execute()
        except BackendError:
            self._counts.update(counts)
            raise
        return len(counts)

    async def run(self) -> None:
        """Flush every `flush_s` until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(self._flush_s)
                try:
                    await self.flush()
                except BackendError as error:
                    _log.warning("rate-limit usage flush failed; kept", error=error.message)
        finally:
            try:
                await asyncio.shield(self.flush())
            except BackendError as error:
                _log.warning("rate-limit usage lost at shutdown", error=error.message)


@dataclass(frozen=True, slots=True)
class RuleUsage:
    """Decisions of one rule of one domain over a report's period.

    Attributes:
        domain: The domain.
        rule: The rule's name, else its configuration path.
        admitted: Decisions within the limit.
        denied: Decisions over the limit (or deny list, open breaker).
        shadow_denied: Decisions a shadow-mode rule would have denied.
        unavailable: Decisions the failure policy made while Redis was unreachable.

    """

    domain: str
    rule: str
    admitted: int = 0
    denied: int = 0
    shadow_denied: int = 0
    unavailable: int = 0

    @property
    def total(self) -> int:
        """Every decision counted."""
        return self.admitted + self.denied + self.shadow_denied + self.unavailable


async def read_usage(
    redis: Redis, *, since_s: float, now_s: float | None = None
) -> list[RuleUsage]:
    """Sum the usage buckets of every domain over the last `since_s` seconds.

    Returns:
        One `RuleUsage` per domain and rule that decided anything, sorted by domain and rule.

    Raises:
        BackendError: Redis failed.

    """
    now = time.time() if now_s is None else now_s
    first = int((now - since_s) // USAGE_BUCKET_S)
    totals: dict[tuple[str, str], Counter[str]] = {}
    with redis_errors("rate limit usage read"):
        keys = [key async for key in redis.scan_iter(match=f"{USAGE_PREFIX}*", count=1000)]
        chosen = []
        for raw in keys:
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            domain, _, minute = key.removeprefix(USAGE_PREFIX).rpartition(":")
            if minute.isdigit() and int(minute) >= first:
                chosen.append((key, domain.removeprefix("{").removesuffix("}")))
        async with redis.pipeline(transaction=False) as pipe:
            for key, _ in chosen:
                pipe.hgetall(key)
            replies: Sequence[Mapping[bytes | str, bytes | str]] = await pipe.execute()
    for (_, domain), fields in zip(chosen, replies, strict=True):
        for field, value in fields.items():
            text = field.decode() if isinstance(field, bytes) else field
            label, _, kind = text.rpartition(_SEPARATOR)
            totals.setdefault((domain, label), Counter())[kind] += int(value)
    return [
        RuleUsage(domain, rule, *(counts[kind] for kind in OUTCOMES))
        for (domain, rule), counts in sorted(totals.items())
    ]
