from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tessera.core.plugins import Limiter, ReleasingLimiter
from tessera.limiters import Evaluation
from tessera.ratelimit._config import DescriptorRule, DomainConfig, RateLimitRule
from tessera.ratelimit._match import Entries, Match, match

#: Plans kept per domain; past it the domain's plans are computed afresh (a burst of unique
#: descriptors must not grow the memory without bound).
MAX_PLANS_PER_DOMAIN = 100_000


@dataclass(frozen=True, slots=True)
class Plan:
    """What one descriptor's entries mean under one configuration version, computed once.

    Attributes:
        found: How the rule was matched.
        rule: The configured limit, if any (`found.rate_limit`, read once).
        label: The rule's name, else its configuration path; empty without a rule.
        shadow: Whether the rule (or its domain) runs in shadow mode.
        limiter: The rule's algorithm, when it counts in Redis.
        key: The Redis key of that count; empty when nothing is counted.
        unit: The evaluation of one hit on the configured limit (None for adaptive rules,
            whose limit moves, and for rules that count nothing).
        cacheable: Whether a denial may go into the local over-limit cache (not for adaptive
            limits, which may rise, nor for leases, which any replica may release).

    """

    found: Match
    rule: RateLimitRule | None
    label: str
    shadow: bool
    limiter: Limiter | None
    key: str
    unit: Evaluation | None
    cacheable: bool


@dataclass(frozen=True, slots=True)
class Traits:
    """What a domain's configuration uses at all, so requests skip what it does not.

    Attributes:
        breakers: Some rule has a circuit breaker.
        adaptive: Some rule has an adaptive limit.
        replaces: Some rule replaces another.

    """

    breakers: bool
    adaptive: bool
    replaces: bool


class PlanBook:
    """Plans of the descriptors seen, per domain and configuration version.

    Matching, the Redis key and the unit evaluation are computed once per distinct descriptor
    and configuration version: a new version (another `DomainConfig` object) starts afresh.

    Concurrency: one event loop.

    Args:
        limiters: Installed limiters by entry-point name.

    """

    def __init__(self, limiters: Mapping[str, Limiter]) -> None:
        self._limiters = limiters
        self._books: dict[str, tuple[DomainConfig, Traits, dict[Entries, Plan]]] = {}

    def traits(self, config: DomainConfig) -> Traits:
        """Return what `config` uses (computed once per version)."""
        return self._book(config)[1]

    def known(self, config: DomainConfig, entries: Sequence[Entries]) -> list[Plan] | None:
        """Return the plan of each descriptor's entries if all are known, else None.

        A plan is only made for entries that passed validation (see `plans`), so entries with a
        known plan need no second validation.
        """
        plans = self._book(config)[2]
        try:
            # not `None in found`: that compares each plan with None through Plan.__eq__
            return [plans[item] for item in entries]
        except KeyError:
            return None

    def plans(self, config: DomainConfig, entries: Sequence[Entries]) -> list[Plan]:
        """Return the plan of each descriptor's entries (tuples: they are the cache's keys).

        The caller validates the entries first: their plans are kept and vouch for them.
        """
        plans = self._book(config)[2]
        found = [plans.get(item) for item in entries]
        if None not in found:
            return found  # type: ignore[return-value]  # no None left, checked just above
        if len(plans) > MAX_PLANS_PER_DOMAIN:
            plans.clear()
        result = []
        for item, plan in zip(entries, found, strict=True):
            if plan is None:
                plan = plans[item] = self._plan(config, item)
            result.append(plan)
        return result

    def _book(self, config: DomainConfig) -> tuple[DomainConfig, Traits, dict[Entries, Plan]]:
        book = self._books.get(config.domain)
        if book is None or book[0] is not config:
            book = self._books[config.domain] = (config, _traits(config.root), {})
        return book

    def _plan(self, config: DomainConfig, entries: Entries) -> Plan:
        found = match(config, entries)
        rule = found.rate_limit
        shadow = config.shadow_mode or (found.rule is not None and found.rule.shadow_mode)
        label = ""
        if found.rule is not None:
            label = rule.name if rule is not None and rule.name else found.rule.path
        if rule is None or rule.unlimited:
            return Plan(found, rule, label, shadow, None, "", None, False)
        limiter = self._limiters[rule.algorithm]
        key = redis_key(config.domain, rule.algorithm, tuple(entries))
        unit = None if found.adaptive is not None else Evaluation(limiter, key, rule.rate(), 1)
        cacheable = found.adaptive is None and not isinstance(limiter, ReleasingLimiter)
        return Plan(found, rule, label, shadow, limiter, key, unit, cacheable)


def _traits(root: DescriptorRule) -> Traits:
    breakers = adaptive = replaces = False
    stack = list(root.children.values())
    while stack:
        rule = stack.pop()
        breakers = breakers or rule.circuit_breaker is not None
        adaptive = adaptive or rule.adaptive is not None
        replaces = replaces or (rule.rate_limit is not None and bool(rule.rate_limit.replaces))
        stack.extend(rule.children.values())
    return Traits(breakers, adaptive, replaces)


@functools.lru_cache(maxsize=65_536)
def redis_key(domain: str, algorithm: str, entries: tuple[tuple[str, str], ...]) -> str:
    """Return the Redis key of a descriptor's count under an algorithm.

    Cached: hot descriptors recur, and escaping and joining cost more than a tuple's hash.
    The domain is the hash tag, so that a request's keys share one Redis Cluster slot and its
    pipeline goes to one node (configuration rejects domains containing braces). Entries are
    written key=value&key=value with those three characters escaped, so no two descriptors
    share a key (envoyproxy/ratelimit's key_value_key_value can collide).
    """
    descriptor = "&".join(f"{_escape(k)}={_escape(v)}" for k, v in entries)
    return f"tessera:ratelimit:{algorithm}:{{{domain}}}:{descriptor}"


def _escape(text: str) -> str:
    return text.replace("%", "%25").replace("&", "%26").replace("=", "%3D")
