from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import structlog

from tessera.core import BackendError, NotFoundError, ValidationError
from tessera.core.plugins import GrantingLimiter, LimitDecision, Limiter, ReleasingLimiter
from tessera.limiters import Evaluation, LimitEvaluator
from tessera.ratelimit._adaptive import AdaptiveState, AdaptiveStore
from tessera.ratelimit._breaker import BreakerStatus, BreakerStore
from tessera.ratelimit._circuit import RedisCircuit
from tessera.ratelimit._config import UNIT_SECONDS, DomainConfig, RateLimitRule
from tessera.ratelimit._match import Match, match
from tessera.ratelimit._over_limit_cache import OverLimitCache
from tessera.ratelimit._plan import Plan, PlanBook, redis_key
from tessera.ratelimit._quota import (
    check_lease_request,
    is_quota_lease,
    parse_quota_lease,
    quota_lease,
)
from tessera.ratelimit._rulebook import RuleBook
from tessera.ratelimit._usage import UsageRecorder

T = TypeVar("T")

_log = structlog.get_logger("tessera.ratelimit")
_new_tuple = tuple.__new__

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


class Verdict(NamedTuple):
    """The answer for one descriptor (immutable).

    A named tuple rather than a frozen dataclass: one is built per descriptor of every request,
    and a frozen dataclass's `__init__` costs several times a tuple's.

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


@dataclass(frozen=True, slots=True)
class QuotaVerdict:
    """The answer to a Lease.

    Attributes:
        granted: Tokens the client may spend by itself.
        lease: What gives unused tokens back (`Release`), empty when nothing was counted.
        valid_s: How long the tokens may be spent.
        verdict: The rule, reason and the limiter's state after the grant, as for a Check.

    """

    granted: int
    lease: str
    valid_s: float
    verdict: Verdict


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
        usage: Counts decisions per rule for the usage reports; None counts nothing.

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
        usage: UsageRecorder | None = None,
    ) -> None:
        self.rules = rules
        self._usage = usage
        self._plans = PlanBook(limiters)
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
        applied = self.rules.get(domain)
        if applied is None:
            validate_requests(requests)
            return [Verdict(False, "unknown domain", None, "", None, False, None) for _ in requests]
        config = applied.config
        traits = self._plans.traits(config)
        entries = [request.entries for request in requests]
        # Descriptors seen before were validated then (their plans vouch for them): only the
        # list's length is checked again. Any unknown one validates the whole list first.
        plans = self._plans.known(config, entries) if requests else None
        if plans is None or len(requests) > MAX_DESCRIPTORS:
            validate_requests(requests)
            plans = self._plans.plans(config, entries)
        matches = [plan.found for plan in plans]
        replaced = _replaced(requests, matches) if traits.replaces else set()
        breakers: dict[int, BreakerStatus] = {}
        breakers_failed: set[int] = set()
        if traits.breakers:
            breakers, breakers_failed = await self._admit_breakers(config, requests, matches, peek)
        adaptive: dict[int, AdaptiveState] = {}
        if traits.adaptive:
            adaptive = await self._adaptive_limits(config, requests, matches)
        verdicts: list[Verdict | None] = [None] * len(requests)
        # What Redis must decide, as parallel lists: plain tuples, no object per descriptor
        pending: list[_Pending] = []
        evaluations: list[Evaluation] = []
        seconds_left = self._over_limit.seconds_left if len(self._over_limit) else None
        for index, (request, plan) in enumerate(zip(requests, plans, strict=True)):
            found, override = plan.found, request.override
            rule = override or plan.rule
            label = "override" if override is not None else plan.label
            shadow = plan.shadow
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
                cost = 0 if peek else request.hits
                state = adaptive.get(index)
                if override is None and plan.limiter is not None:
                    limiter, key, cacheable = plan.limiter, plan.key, plan.cacheable
                else:  # a caller's limit: counted apart, never cached (it may change per call)
                    limiter = self._limiters[rule.algorithm]
                    key = redis_key(config.domain, rule.algorithm, request.entries)
                    cacheable = False
                cached = seconds_left(key) if seconds_left and cacheable else 0.0
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
                evaluation = plan.unit if override is None and cost == 1 else None
                if evaluation is None or state is not None:
                    limit = rule.requests_per_unit if state is None else state.limit
                    evaluation = Evaluation(limiter, key, rule.rate(limit), cost)
                pending.append((index, rule, label, cacheable))
                evaluations.append(evaluation)
        if pending:
            await self._evaluate(config, pending, evaluations, plans, breakers, adaptive, verdicts)
        decided = [v for v in verdicts if v is not None]
        if self._usage is not None and not peek:
            self._usage.record(domain, ((v.label, v.over_limit, v.reason) for v in decided))
        return decided

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
                keys.append(redis_key(config.domain, rule.algorithm, request.entries))
            if found.circuit_breaker is not None:
                keys.append(redis_key(config.domain, BREAKER, request.entries))
            if found.adaptive is not None:
                keys.append(redis_key(config.domain, ADAPTIVE, request.entries))
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
            key = redis_key(config.domain, BREAKER, request.entries)
            breaker = await self._breakers.report(
                key, found.circuit_breaker, success=success, latency_s=latency_s
            )
        if found.adaptive is not None:
            key = redis_key(config.domain, ADAPTIVE, request.entries)
            adaptive = await self._adaptive.report(
                key, found.adaptive, success=success, latency_s=latency_s, source=found
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
                key = redis_key(config.domain, ADAPTIVE, request.entries)
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
                key = redis_key(config.domain, BREAKER, request.entries)
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

    async def release(
        self, domain: str, request: DescriptorRequest, lease: str, unused: int = 0
    ) -> LimitDecision:
        """Give back the units `lease` holds on the descriptor's rule.

        A concurrency lease (a `ReleasingLimiter`'s) frees all its units; a quota lease (from
        `lease`) gives its `unused` tokens back.

        Returns:
            The decision of the release: `allowed` iff the lease was still held (a quota lease:
            iff tokens were counted back), `remaining` counted after it.

        Raises:
            ValidationError: The descriptor is malformed or matches no rule whose algorithm holds
                such leases (field `descriptor`), the lease is malformed (field `lease`), or
                `unused` exceeds the quota lease's tokens (field `unused`).
            NotFoundError: The domain is not configured.
            BackendError: Redis failed (the lease then expires after the rule's period).

        """
        validate_requests([request], "descriptor")
        if not lease:
            raise ValidationError.for_field("lease", "must be set")
        if is_quota_lease(lease):
            return await self._give_back(domain, request, lease, unused)
        config = self.domain(domain)
        rule = match(config, request.entries).rate_limit
        limiter = None if rule is None else self._limiters.get(rule.algorithm)
        if rule is None or rule.unlimited or not isinstance(limiter, ReleasingLimiter):
            raise ValidationError.for_field(
                "descriptor", "matches no rule whose algorithm holds leases"
            )
        key = redis_key(config.domain, rule.algorithm, request.entries)
        rate = rule.rate()
        [decision] = await self._evaluator.evaluate([Evaluation(limiter, key, rate, 0, lease)])
        return decision

    async def lease(
        self, domain: str, request: DescriptorRequest, tokens: int, ttl_s: float
    ) -> QuotaVerdict:
        """Grant up to `tokens` of the descriptor's rule for the caller to spend by itself.

        The granted tokens are counted at once, as if that many unit requests were admitted.
        Nothing is counted, and everything asked is granted, when no limit applies (no rule,
        `unlimited`, allow list); a deny list grants nothing. In shadow mode everything asked
        is granted and only what fits is counted. While Redis is unreachable the domain's
        `failure_mode` grants everything (`open`) or nothing (`closed`) for the ttl.

        Raises:
            ValidationError: The descriptor is malformed, or its rule has a circuit breaker or
                an adaptive limit, or an algorithm that grants no quota (field `descriptor`);
                `tokens` or `ttl` is out of range.
            NotFoundError: The domain is not configured.

        """
        validate_requests([request], "descriptor")
        check_lease_request(tokens, ttl_s)
        config = self.domain(domain)
        found = match(config, request.entries)
        rule = found.rate_limit
        label = _label(request, found)
        shadow = config.shadow_mode or (found.rule is not None and found.rule.shadow_mode)
        if found.listed or rule is None or rule.unlimited:
            if found.circuit_breaker is not None and not found.listed:
                raise ValidationError.for_field(
                    "descriptor", "quota leases need a rule without a circuit_breaker"
                )
            reason = f"{found.listed} list" if found.listed else "no rule"
            if rule is not None and rule.unlimited:
                reason = "unlimited"
            granted = 0 if found.listed == "deny" and not shadow else tokens
            verdict = Verdict(not granted, reason, rule, label, None, shadow, found)
            return QuotaVerdict(granted, "", ttl_s, verdict)
        limiter = self._limiters[rule.algorithm]
        if found.circuit_breaker is not None or found.adaptive is not None:
            raise ValidationError.for_field(
                "descriptor", "quota leases need a rule without a circuit_breaker or adaptive"
            )
        if not isinstance(limiter, GrantingLimiter):
            raise ValidationError.for_field(
                "descriptor", f"the {rule.algorithm} algorithm grants no quota leases"
            )
        key = redis_key(config.domain, rule.algorithm, request.entries)
        grant = await self._through_circuit(
            lambda: self._evaluator.grant(limiter, key, rule.rate(), tokens),
            "redis quota grant failed; applying failure_mode",
            domain=config.domain,
        )
        if grant is None:
            verdict = _failure_verdict(config, rule, label, shadow, found)
            granted = 0 if verdict.over_limit else tokens
            return QuotaVerdict(granted, "", ttl_s, verdict)
        decision = LimitDecision(
            grant.granted > 0,
            grant.limit,
            grant.remaining,
            grant.retry_after_s,
            grant.valid_s if grant.valid_s < float("inf") else 0.0,
        )
        if grant.granted == tokens:
            reason = "within limit"
        elif grant.granted:
            reason = "partly granted (over limit)"
        else:
            reason = "over limit"
        granted = grant.granted
        if shadow and granted < tokens:
            reason, granted = "shadow mode (over limit)", tokens
        verdict = Verdict(not granted, reason, rule, label, decision, shadow, found)
        lease = quota_lease(grant.stamp, grant.granted)
        return QuotaVerdict(granted, lease, min(ttl_s, grant.valid_s), verdict)

    async def _give_back(
        self, domain: str, request: DescriptorRequest, lease: str, unused: int
    ) -> LimitDecision:
        stamp, unused = parse_quota_lease(lease, unused)
        config = self.domain(domain)
        rule = match(config, request.entries).rate_limit
        limiter = None if rule is None else self._limiters.get(rule.algorithm)
        if rule is None or rule.unlimited or not isinstance(limiter, GrantingLimiter):
            raise ValidationError.for_field(
                "descriptor", "matches no rule whose algorithm grants quota leases"
            )
        key = redis_key(config.domain, rule.algorithm, request.entries)
        decision = await self._evaluator.give_back(limiter, key, rule.rate(), stamp, unused)
        if decision.allowed:
            # Tokens came back: this replica's memory of the key being over its limit is wrong.
            self._over_limit.forget([key])
        return decision

    async def _evaluate(
        self,
        config: DomainConfig,
        pending: list[_Pending],
        evaluations: list[Evaluation],
        plans: Sequence[Plan],
        breakers: Mapping[int, BreakerStatus],
        adaptive: Mapping[int, AdaptiveState],
        verdicts: list[Verdict | None],
    ) -> None:
        # Writes the verdict of each pending descriptor into `verdicts`.
        decisions = await self._through_circuit(
            lambda: self._evaluator.evaluate(evaluations),
            "redis evaluation failed; applying failure_mode",
            domain=config.domain,
            failure_mode=config.failure_mode,
        )
        if decisions is None:
            for index, rule, label, _ in pending:
                plan = plans[index]
                verdicts[index] = _failure_verdict(
                    config,
                    rule,
                    label,
                    plan.shadow,
                    plan.found,
                    breakers.get(index),
                    adaptive.get(index),
                )
            return
        for (index, rule, label, cacheable), evaluation, decision in zip(
            pending, evaluations, decisions, strict=True
        ):
            plan = plans[index]
            shadow = plan.shadow
            if decision.allowed:
                over, reason = False, "within limit"
            else:
                if cacheable:
                    self._remember(evaluation, decision)
                over, reason = not shadow, "shadow mode (over limit)" if shadow else "over limit"
            # every field given, in order: the tuple is built in C, without the named tuple's
            # Python `__new__` (a third of this loop's cost at 100 descriptors)
            verdicts[index] = _new_tuple(
                Verdict,
                (
                    over,
                    reason,
                    rule,
                    label,
                    decision,
                    shadow,
                    plan.found,
                    breakers.get(index),
                    adaptive.get(index),
                ),
            )

    def _remember(self, evaluation: Evaluation, decision: LimitDecision) -> None:
        # A unit-cost denial with nothing left tells when the next unit fits, whatever the
        # algorithm; until then the key is over its limit for every request. Leases can be
        # released early (on any replica), an adaptive limit may rise before then, and a
        # caller's override may differ from call to call on one key: none of those is cached
        # (the caller passes only cacheable denials).
        if decision.remaining == 0 and evaluation.cost == 1:
            self._over_limit.add(evaluation.key, decision.retry_after_s)


# A descriptor Redis must decide: its index in the request, the rule applied (after a caller's
# override), its label, and whether a denial may go into the over-limit cache. A plain tuple:
# one is built per descriptor of every request.
_Pending = tuple[int, RateLimitRule, str, bool]


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
