from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tessera.ratelimit._config import (
    AdaptiveRule,
    CircuitBreakerRule,
    DescriptorRule,
    DomainConfig,
    RateLimitRule,
)

#: A request descriptor's entries: (key, value) pairs, in order.
Entries = Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Match:
    """Which rule of a domain applies to a descriptor, and how it was found.

    Attributes:
        rule: The descriptor rule reached by the last entry, when it has a limit or a circuit
            breaker.
        listed: `"allow"` or `"deny"` when an entry's value is on a list of the rule it matched
            (the first list hit along the way wins), else empty.
        steps: One human-readable line per matching step, for Explain.

    """

    rule: DescriptorRule | None
    listed: str
    steps: tuple[str, ...]

    @property
    def rate_limit(self) -> RateLimitRule | None:
        """The limit that applies, if any."""
        return None if self.rule is None else self.rule.rate_limit

    @property
    def adaptive(self) -> AdaptiveRule | None:
        """The adaptive limit that applies, if any."""
        return None if self.rule is None else self.rule.adaptive

    @property
    def circuit_breaker(self) -> CircuitBreakerRule | None:
        """The circuit breaker that applies, if any."""
        return None if self.rule is None else self.rule.circuit_breaker


def match(config: DomainConfig, entries: Entries) -> Match:
    """Walk the domain's descriptor tree with the entries, as envoyproxy/ratelimit does.

    At each level the entry first matches a rule with the same key and value, then a wildcard rule
    whose value (ending in `*`) is a prefix of the entry's value, then a rule with the key alone.
    The walk stops when no rule matches or the matched rule has no nested descriptors. The limit
    applies only when the LAST entry matched a rule that has one.

    Returns:
        The match; `rule` is None when no limit applies.

    """
    node = config.root
    steps: list[str] = []
    listed = ""
    found: DescriptorRule | None = None
    for index, (key, value) in enumerate(entries):
        child, how = _child(node, key, value)
        if child is None:
            steps.append(f"entry {index} {key}={value!r}: no rule matches; no limit")
            return Match(None, listed, tuple(steps))
        steps.append(f"entry {index} {key}={value!r}: {how} rule at {child.path}")
        if not listed and value in child.deny:
            listed = "deny"
            steps.append(f"value {value!r} is on the deny list of {child.path}")
        elif not listed and value in child.allow:
            listed = "allow"
            steps.append(f"value {value!r} is on the allow list of {child.path}")
        if index == len(entries) - 1:
            found = child
        elif not child.children:
            steps.append(f"{child.path} has no nested descriptors; entries left unmatched")
            return Match(None, listed, tuple(steps))
        node = child
    if found is None or (found.rate_limit is None and found.circuit_breaker is None):
        steps.append("the last entry's rule has no rate_limit or circuit_breaker; no limit")
        return Match(None, listed, tuple(steps))
    if found.circuit_breaker is not None:
        steps.append(f"{found.path} has a {found.circuit_breaker.strategy} circuit breaker")
    if found.adaptive is not None:
        steps.append(f"{found.path} has a {found.adaptive.strategy} adaptive limit")
    return Match(found, listed, tuple(steps))


def _child(node: DescriptorRule, key: str, value: str) -> tuple[DescriptorRule | None, str]:
    exact = node.children.get(f"{key}_{value}")
    if exact is not None:
        return exact, "exact"
    composite = f"{key}_{value}"
    for wildcard in node.wildcards:
        if composite.startswith(wildcard[:-1]):
            return node.children[wildcard], "wildcard"
    return node.children.get(key), "key-only"
