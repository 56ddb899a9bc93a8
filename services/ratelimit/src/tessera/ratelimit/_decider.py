from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import structlog

from tessera.core import BackendError, NotFoundError, ValidationError
from tessera.core.plugins import LimitDecision, Limiter, Rate, ReleasingLimiter
from tessera.limiters import Evaluation, LimitEvaluator
from tessera.ratelimit._adaptive import AdaptiveState, AdaptiveStore
from tessera.ratelimit._breaker import BreakerStatus, BreakerStore
from tessera.ratelimit._circuit import RedisCircuit
from tessera.ratelimit._config import UNIT_SECONDS, DomainConfig, RateLimitRule
from tessera.ratelimit._match import Match, match
from tessera.ratelimit._over_limit_cache import OverLimitCache
from tessera.ratelimit._rulebook import RuleBook

T = TypeVar("T")

_log = structlog.get_logger("tessera.ratelimit")

#: Bounds of one request: a descriptor list this long is a client bug, not traffic.
MAX_DESCRIPTORS = 100
MAX_ENTRIES = 16
MAX_TEXT = 256
#: The algorithm slots of circuit breakers' and adaptive limits' Redis keys.
BREAKER = "breaker"
ADAPTIVE = "adaptive"


@dataclass(frozen=True, slots=True)
class DescriptorRequest:
    """One descriptor of a request.

    Attributes:
        entries: Its (key, value) pairs, in order.
        hits: Units it takes, >= 1 (a peek ignores them).
        override: A limit the caller sets for this descriptor (Envoy's per-descriptor `limit`),
            used instead of the configured one (fixed window, like envoyproxy/ratelimit).

    """

    entries: tuple[tuple[str, str], ...]
    hits: int = 1
    override: RateLimitRule | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer for one descriptor.

    Attributes:
        over_limit: Whether it is denied (never in shadow mode or when failing open).
        reason: Why, in words (see `tessera.ratelimit.v1.Decision.reason`).
        rule: The limit applied, after overrides; None when nothing was limited.
        label: The rule's name, else its configuration path.
        decision: The limiter's decision; None when Redis was not asked.
        shadow: Whether the rule runs in shadow mode.
        match: How the rule was found.
        breaker: The state of the rule's circuit breaker, when it has one and Redis answered.
        adaptive: The state of the rule's adaptive limit, when it has one and Redis answered.

    """

    over_limit: bool
    reason: str
    rule: RateLimitRule | None
    label: str
    decision: LimitDecision | None
    shadow: bool
    match: Match | None
    breaker: BreakerStatus | None = None
    adaptive: AdaptiveState | None = None


def validate_requests(requests: Sequence[DescriptorRequest], field: str = "descriptors") -> None:
    """Reject empty or oversized descriptor lists and entries, naming the field.

    Raises:
        ValidationError: With one violation per bad field.

    """
    if not requests:
        raise ValidationError.for_field(field, "must hold at least one descriptor")
    if len(requests) > MAX_DESCRIPTORS:
        raise ValidationError.for_field(field, f"must hold at most {MAX_DESCRIPTORS} descriptors")
    for index, request in enumerate(requests):
        path = f"{field}[{index}]"
        if not request.entries:
            raise ValidationError.for_field(f"{path}.entries", "must hold at least one entry")
        if len(request.entries) > MAX_ENTRIES:
            raise ValidationError.for_field(
                f"{path}.entries", f"must hold at most {MAX_ENTRIES} entries"
            )
        for number, (key, value) in enumerate(request.entries):
            if not key:
                raise ValidationError.for_field(f"{path}.entries[{number}].key", "must be set")
            if len(key) > MAX_TEXT or len(value) > MAX_TEXT:
                raise ValidationError.for_field(
                    f"{path}.entries[{number}]", f"key and value must be at most {MAX_TEXT} long"
                )


def override_rule(requests_per_unit: int, unit: str, field: str) -> RateLimitRule:
    """Build the rule of a caller's per-descriptor limit override.

    Raises:
        ValidationError: The unit is not one of UNIT_SECONDS.

    """
    seconds = UNIT_SECONDS.get(unit.lower())
    if seconds is None:
        raise ValidationError.for_field(
            f"{field}.unit", f"must be one of {', '.join(UNIT_SECONDS)}"
        )
    return RateLimitRule(requests_per_unit, unit.lower(), float(seconds), name="override")


class Decider:
    """Matches descriptors to rules and evaluates all of one request in one Redis round trip.

    Redis failures never surface to callers: the domain's `failure_mode` answers, at once while
    the circuit is open.

    Args:
        rules: The serving configuration.
        evaluator: Runs the limiters on Redis.
        limiters: Installed limiters by entry-point name.
        circuit: The circuit around Redis.
        breakers: The circuit breakers' shared state.
        over_limit: This replica's cache of keys known to be over their limit.
        adaptive: The adaptive limits' shared state.

    """

    def __init__(
        self,
        rules: RuleBook,
        evaluator: LimitEvaluator,
        limiters: Mapping[str, Limiter],
        circuit: RedisCircuit,
        breakers: BreakerStore,
        over_limit: OverLimitCache,
        adaptive: AdaptiveStore,
    ) -> None:
        self.rules = rules
        self._evaluator = evaluator
        self._limiters = limiters
        self._circuit = circuit
        self._breakers = breakers
        self._over_limit = over_limit
        self._adaptive = adaptive

    def domain(self, domain: str) -> DomainConfig:
        """Return the serving configuration of `domain`.

        Raises:
            NotFoundError: The domain is not configured.

        """
        applied = self.rules.get(domain)
        if applied is None:
            raise NotFoundError(f"rate-limit domain {domain!r} is not configured")
        return applied.config

    async def decide(
        self, domain: str, requests: Sequence[DescriptorRequest], *, peek: bool = False
    ) -> list[Verdict]:
        """Decide every descriptor; counts hits unless `peek`.

        An unknown domain limits nothing (as envoyproxy/ratelimit). Rules named in another
        applicable rule's `replaces` are dropped. Allow-listed values pass and deny-listed ones are
        denied without touching Redis. A rule with a circuit breaker is denied while the breaker
        is open (or half-open without a free probe slot), before its rate limit counts anything;
        a Check admitted half-open takes a probe slot, a peek takes none.

        Raises:
            ValidationError: A request is malformed.

        """
        validate_requests(requests)
        applied = self.rules.get(domain)
        if applied is None:
            return [Verdict(False, "unknown domain", None, "", None, False, None) for _ in requests]
        config = applied.config
        matches = [match(config, request.entries) for request in requests]
        replaced = _replaced(requests, matches)
        breakers, breakers_failed = await self._admit_breakers(config, requests, matches, peek)
        adaptive = await self._adaptive_limits(config, requests, matches)
        verdicts: list[Verdict | None] = [None] * len(requests)
        pending: list[_Pending] = []
        for index, (request, found) in enumerate(zip(requests, matches, strict=True)):
            rule = request.override or found.rate_limit
            label = _label(request, found)
            shadow = config.shadow_mode or (found.rule is not None and found.rule.shadow_mode)
            breaker = breakers.get(index)
            if found.listed:
                over = found.listed == "deny" and not shadow
                verdicts[index] = Verdict(
                    over, f"{found.listed} list", rule, label, None, shadow, found
                )
            elif index in breakers_failed:
                verdicts[index] = _failure_verdict(config, rule, label, shadow, found)
            elif breaker is not None and (not breaker.allowed or rule is None):
                over = not breaker.allowed and not shadow
                reason = f"circuit {breaker.state.replace('_', '-')}"
                if not breaker.allowed and shadow:
                    reason = f"shadow mode ({reason})"
                verdicts[index] = Verdict(over, reason, rule, label, None, shadow, found, breaker)
            elif rule is None:
                verdicts[index] = Verdict(False, "no rule", None, "", None, False, found)
            elif rule.unlimited or (rule.name and rule.name in replaced):
                reason = "unlimited" if rule.unlimited else "replaced"
                verdicts[index] = Verdict(False, reason, rule, label, None, shadow, found)
            else:
                limiter = self._limiters[rule.algorithm]
                key = _redis_key(config.domain, rule.algorithm, request.entries)
                state = adaptive.get(index)
                # an adaptive limit may rise before the reset: its keys are never cached
                adaptive_rule = found.adaptive is not None and request.override is None
                cached = 0.0 if adaptive_rule else self._over_limit.seconds_left(key)
                if cached > 0:
                    decision = LimitDecision(False, rule.requests_per_unit, 0, cached, cached)
                    verdicts[index] = Verdict(
                        not shadow,
                        "shadow mode (over limit, local cache)"
                        if shadow
                        else "over limit (local cache)",
                        rule,
                        label,
                        decision,
                        shadow,
                        found,
                        breaker,
                    )
                    continue
                limit = rule.requests_per_unit if state is None else state.limit
                rate = Rate(limit, rule.period_s)
                cost = 0 if peek else request.hits
                evaluation = Evaluation(limiter, key, rate, cost)
                pending.append(
                    _Pending(index, evaluation, rule, label, shadow, found, breaker, state)
                )
        if pending:
            for item, verdict in zip(pending, await self._evaluate(config, pending), strict=True):
                verdicts[item.index] = verdict
        return [v for v in verdicts if v is not None]

    async def reset(self, domain: str, requests: Sequence[DescriptorRequest]) -> int:
        """Delete the counters of the descriptors' matching rules; returns how many existed.

        Raises:
            ValidationError: A request is malformed.
            NotFoundError: The domain is not configured.
            BackendError: Redis failed.

        """
        validate_requests(requests)
        config = self.domain(domain)
        keys = []
        for request in requests:
            found = match(config, request.entries)
            rule = request.override or found.rate_limit
            if rule is not None and not rule.unlimited:
                keys.append(_redis_key(config.domain, rule.algorithm, request.entries))
            if found.circuit_breaker is not None:
                keys.append(_redis_key(config.domain, BREAKER, request.entries))
            if found.adaptive is not None:
                keys.append(_redis_key(config.domain, ADAPTIVE, request.entries))
        self._over_limit.forget(keys)
        self._adaptive.forget(keys)
        return await self._evaluator.reset(keys)

    async def report(
        self, domain: str, request: DescriptorRequest, *, success: bool, latency_s: float
    ) -> tuple[BreakerStatus | None, AdaptiveState | None]:
        """Feed one call's outcome to the circuit breaker and the adaptive limit of its rule.

        Returns:
            The breaker's and the adaptive limit's states after the outcome (None for what the
            rule does not have).

        Raises:
            ValidationError: The target is malformed or its rule has neither a circuit breaker
                nor an adaptive limit (field `target`), or the latency is negative (`latency`).
            NotFoundError: The domain is not configured.
            BackendError: Redis failed.

        """
        validate_requests([request], "target")
        if latency_s < 0:
            raise ValidationError.for_field("latency", "must be >= 0")
        config = self.domain(domain)
        found = match(config, request.entries)
        if found.circuit_breaker is None and found.adaptive is None:
            raise ValidationError.for_field(
                "target", "matches no rule with a circuit_breaker or an adaptive limit"
            )
        breaker = adaptive = None
        if found.circuit_breaker is not None:
            key = _redis_key(config.domain, BREAKER, request.entries)
            breaker = await self._breakers.report(
                key, found.circuit_breaker, success=success, latency_s=latency_s
            )
        if found.adaptive is not None:
            key = _redis_key(config.domain, ADAPTIVE, request.entries)
            adaptive = await self._adaptive.report(
                key, found.adaptive, success=success, latency_s=latency_s
            )
        return breaker, adaptive

    async def _adaptive_limits(
        self,
        config: DomainConfig,
        requests: Sequence[DescriptorRequest],
        matches: Sequence[Match],
    ) -> dict[int, AdaptiveState]:
        # The limits in force for adaptive rules (not overridden by the caller). If Redis cannot
        # be read, the configured limit applies and the evaluation meets the failure policy.
        indexes, targets = [], []
        for index, (request, found) in enumerate(zip(requests, matches, strict=True)):
            if found.adaptive is not None and request.override is None and not found.listed:
                indexes.append(index)
                key = _redis_key(config.domain, ADAPTIVE, request.entries)
                targets.append((key, found.adaptive))
        if not targets or not self._circuit.allows():
            return {}
        try:
            states = await self._adaptive.current(targets)
        except BackendError as error:
            if error.retryable:
                self._circuit.failed()
            else:
                self._circuit.abandoned()
            return {}
        except BaseException:
            self._circuit.abandoned()
            raise
        self._circuit.succeeded()
        return dict(zip(indexes, states, strict=True))

    async def _admit_breakers(
        self,
        config: DomainConfig,
        requests: Sequence[DescriptorRequest],
        matches: Sequence[Match],
        peek: bool,
    ) -> tuple[dict[int, BreakerStatus], set[int]]:
        # The breakers of the descriptors that are not on a list, asked in one go; while Redis
        # is unreachable their descriptors get the domain's failure_mode.
        indexes, targets = [], []
        for index, (request, found) in enumerate(zip(requests, matches, strict=True)):
            if found.circuit_breaker is not None and not found.listed:
                indexes.append(index)
                key = _redis_key(config.domain, BREAKER, request.entries)
                targets.append((key, found.circuit_breaker))
        if not targets:
            return {}, set()
        statuses = await self._through_circuit(
            lambda: self._breakers.admit(targets, take=not peek),
            "redis breaker admission failed; applying failure_mode",
            domain=config.domain,
        )
        if statuses is None:
            return {}, set(indexes)
        return dict(zip(indexes, statuses, strict=True)), set()

    async def _through_circuit(
        self, call: Callable[[], Awaitable[T]], failure: str, **context: str
    ) -> T | None:
        """Run one Redis round trip behind the circuit around Redis.

        Returns:
            The call's result, or None when the circuit is open or Redis failed (logged as
            `failure` with `context`): the caller then applies the domain's failure_mode.

        """
        if not self._circuit.allows():
            return None
        try:
            result = await call()
        except BackendError as error:
            # Only an unreachable Redis opens the circuit; a script error is this call's.
            if error.retryable:
                self._circuit.failed()
            else:
                self._circuit.abandoned()
            _log.warning(failure, error=error.message, **context)
            return None
        except BaseException:
            # Cancelled, or not Redis's fault: no verdict on Redis, let the next call probe.
            self._circuit.abandoned()
            raise
        self._circuit.succeeded()
        return result

    async def release(self, domain: str, request: DescriptorRequest, lease: str) -> LimitDecision:
        """Give back the units `lease` holds on the descriptor's rule (a `ReleasingLimiter`'s).

        Returns:
            The decision of the release: `allowed` iff the lease was still held, `remaining`
            counted after it.

        Raises:
            ValidationError: The descriptor is malformed or matches no rule whose algorithm holds
                leases (field `descriptor`), or the lease is malformed (field `lease`).
            NotFoundError: The domain is not configured.
            BackendError: Redis failed (the lease then expires after the rule's period).

        """
        validate_requests([request], "descriptor")
        if not lease:
            raise ValidationError.for_field("lease", "must be set")
        config = self.domain(domain)
        rule = match(config, request.entries).rate_limit
        limiter = None if rule is None else self._limiters.get(rule.algorithm)
        if rule is None or rule.unlimited or not isinstance(limiter, ReleasingLimiter):
            raise ValidationError.for_field(
                "descriptor", "matches no rule whose algorithm holds leases"
            )
        key = _redis_key(config.domain, rule.algorithm, request.entries)
        rate = Rate(rule.requests_per_unit, rule.period_s)
        [decision] = await self._evaluator.evaluate([Evaluation(limiter, key, rate, 0, lease)])
        return decision

    async def _evaluate(
        self,
        config: DomainConfig,
        pending: list[_Pending],
    ) -> list[Verdict]:
        decisions = await self._through_circuit(
            lambda: self._evaluator.evaluate([item.evaluation for item in pending]),
            "redis evaluation failed; applying failure_mode",
            domain=config.domain,
            failure_mode=config.failure_mode,
        )
        if decisions is None:
            return [
                _failure_verdict(config, p.rule, p.label, p.shadow, p.match, p.breaker, p.adaptive)
                for p in pending
            ]
        verdicts = []
        for p, decision in zip(pending, decisions, strict=True):
            self._remember(p, decision)
            if decision.allowed:
                reason = "within limit"
            else:
                reason = "shadow mode (over limit)" if p.shadow else "over limit"
            over = not decision.allowed and not p.shadow
            verdicts.append(
                Verdict(
                    over,
                    reason,
                    p.rule,
                    p.label,
                    decision,
                    p.shadow,
                    p.match,
                    p.breaker,
                    p.adaptive,
                )
            )
        return verdicts

    def _remember(self, pending: _Pending, decision: LimitDecision) -> None:
        # A unit-cost denial with nothing left tells when the next unit fits, whatever the
        # algorithm; until then the key is over its limit for every request. Leases can be
        # released early (on any replica), an adaptive limit may rise before then, and a
        # caller's override may differ from call to call on one key: none of those is cached.
        evaluation = pending.evaluation
        if (
            not decision.allowed
            and decision.remaining == 0
            and evaluation.cost == 1
            and pending.rule.name != "override"
            and pending.match.adaptive is None
            and not isinstance(evaluation.limiter, ReleasingLimiter)
        ):
            self._over_limit.add(evaluation.key, decision.retry_after_s)


@dataclass(frozen=True, slots=True)
class _Pending:
    index: int
    evaluation: Evaluation
    rule: RateLimitRule
    label: str
    shadow: bool
    match: Match
    breaker: BreakerStatus | None
    adaptive: AdaptiveState | None


def _failure_verdict(
    config: DomainConfig,
    rule: RateLimitRule | None,
    label: str,
    shadow: bool,
    found: Match,
    breaker: BreakerStatus | None = None,
    adaptive: AdaptiveState | None = None,
) -> Verdict:
    reason = f"redis unavailable (failure_mode {config.failure_mode})"
    over = config.failure_mode == "closed" and not shadow
    return Verdict(over, reason, rule, label, None, shadow, found, breaker, adaptive)


def _replaced(requests: Sequence[DescriptorRequest], matches: Sequence[Match]) -> set[str]:
    names: set[str] = set()
    for request, found in zip(requests, matches, strict=True):
        rule = request.override or found.rate_limit
        if rule is not None:
            names.update(rule.replaces)
    return names


def _label(request: DescriptorRequest, found: Match) -> str:
    if request.override is not None:
        return "override"
    if found.rule is None:
        return ""
    rule = found.rule.rate_limit
    return rule.name if rule is not None and rule.name else found.rule.path


@functools.lru_cache(maxsize=65_536)
def _redis_key(domain: str, algorithm: str, entries: tuple[tuple[str, str], ...]) -> str:
    # Cached: hot descriptors recur, and escaping and joining cost more than a tuple's hash.
    # The domain is the hash tag, so that a request's keys share one Redis Cluster slot and its
    # pipeline goes to one node (configuration rejects domains containing braces). Entries are
    # written key=value&key=value with those three characters escaped, so no two descriptors
    # share a key (envoyproxy/ratelimit's key_value_key_value can collide).
    descriptor = "&".join(f"{_escape(k)}={_escape(v)}" for k, v in entries)
    return f"tessera:ratelimit:{algorithm}:{{{domain}}}:{descriptor}"


def _escape(text: str) -> str:
    return text.replace("%", "%25").replace("&", "%26").replace("=", "%3D")
