from __future__ import annotations

import math
from collections.abc import Sequence

import grpc
from google.protobuf import duration_pb2

from tessera.core import ValidationError
from tessera.proto.ratelimit.v1 import ratelimit_pb2 as pb
from tessera.proto.ratelimit.v1 import ratelimit_pb2_grpc
from tessera.ratelimit._adaptive import AdaptiveState
from tessera.ratelimit._breaker import BreakerStatus
from tessera.ratelimit._config import RateLimitRule
from tessera.ratelimit._decider import Decider, DescriptorRequest, Verdict, validate_requests
from tessera.ratelimit._match import match
from tessera.ratelimit._quota import DEFAULT_LEASE_TTL_S

#: Full name of Tessera's rate-limit service.
RATE_LIMITER_SERVICE = "tessera.ratelimit.v1.RateLimiter"
#: Parsed descriptors and decision templates kept (about 0.5 KiB a descriptor); past it they are
#: computed afresh, so a burst of unique descriptors costs a re-parse, never unbounded memory.
_MAX_CACHED = 16_384

_Context = grpc.aio.ServicerContext[object, object]


class RateLimiterServicer(ratelimit_pb2_grpc.RateLimiterServicer):
    """`tessera.ratelimit.v1.RateLimiter`: Check, Peek, Reset, Explain, Release, Lease, Report.

    Unlike Envoy's API, an unknown domain is NOT_FOUND.

    Args:
        decider: Matches and evaluates the descriptors.

    """

    def __init__(self, decider: Decider) -> None:
        self._decider = decider
        # Reading a descriptor's entries through protobuf costs four times serializing it: hot
        # descriptors are parsed once, keyed by their wire bytes and the request's hits.
        self._parsed: dict[tuple[bytes, int], DescriptorRequest] = {}
        # The fields a verdict shares with every verdict of its rule and outcome, set once. Keyed
        # by the rule's id (hashing the rule costs more than filling the fields); the entry holds
        # the rule, so no other rule can get its id while the entry lives.
        self._templates: dict[_TemplateKey, tuple[RateLimitRule | None, pb.Decision]] = {}

    async def Check(self, request: pb.CheckRequest, context: _Context) -> pb.CheckResponse:  # noqa: N802 - gRPC name
        """Count and decide every descriptor in one Redis round trip."""
        return await self._decide(request.domain, request.descriptors, request.hits or 1, False)

    async def Peek(self, request: pb.PeekRequest, context: _Context) -> pb.CheckResponse:  # noqa: N802 - gRPC name
        """Decide every descriptor without counting."""
        return await self._decide(request.domain, request.descriptors, 1, True)

    async def Reset(self, request: pb.ResetRequest, context: _Context) -> pb.ResetResponse:  # noqa: N802 - gRPC name
        """Delete the counters of the descriptors."""
        _domain(request.domain)
        deleted = await self._decider.reset(request.domain, _requests(request.descriptors, 1))
        return pb.ResetResponse(deleted=deleted)

    async def Explain(self, request: pb.ExplainRequest, context: _Context) -> pb.ExplainResponse:  # noqa: N802 - gRPC name
        """Tell which rule matches one descriptor, why, and its state (nothing counted)."""
        _domain(request.domain)
        [descriptor] = _requests([request.descriptor], 1, field="descriptor")
        config = self._decider.domain(request.domain)
        found = match(config, descriptor.entries)
        [verdict] = await self._decider.decide(request.domain, [descriptor], peek=True)
        applied = self._decider.rules.get(request.domain)
        return pb.ExplainResponse(
            matched=found.rate_limit is not None,
            steps=found.steps,
            decision=_decision(verdict),
            config_version="" if applied is None else applied.version,
        )

    async def Release(self, request: pb.ReleaseRequest, context: _Context) -> pb.ReleaseResponse:  # noqa: N802 - gRPC name
        """Give back the units of a lease a Check handed out."""
        _domain(request.domain)
        [descriptor] = _requests([request.descriptor], 1, field="descriptor")
        decision = await self._decider.release(
            request.domain, descriptor, request.lease, request.unused
        )
        return pb.ReleaseResponse(released=decision.allowed, remaining=decision.remaining)

    async def Lease(self, request: pb.LeaseRequest, context: _Context) -> pb.LeaseResponse:  # noqa: N802 - gRPC name
        """Grant up to `tokens` of a descriptor's rule for the client to spend by itself."""
        _domain(request.domain)
        [descriptor] = _requests([request.descriptor], 1, field="descriptor")
        ttl_s = DEFAULT_LEASE_TTL_S
        if request.HasField("ttl"):
            ttl_s = request.ttl.seconds + request.ttl.nanos / 1e9
        quota = await self._decider.lease(request.domain, descriptor, request.tokens, ttl_s)
        response = pb.LeaseResponse(
            granted=quota.granted, lease=quota.lease, decision=_decision(quota.verdict)
        )
        set_duration(response.valid_for, quota.valid_s)
        return response

    async def ReportOutcome(  # noqa: N802 - gRPC name
        self, request: pb.ReportOutcomeRequest, context: _Context
    ) -> pb.ReportOutcomeResponse:
        """Feed one call's outcome to the target's circuit breaker."""
        _domain(request.domain)
        [target] = _requests([request.target], 1, field="target")
        latency_s = request.latency.seconds + request.latency.nanos / 1e9
        status = await self._decider.report(
            request.domain, target, success=request.success, latency_s=latency_s
        )
        response = pb.ReportOutcomeResponse()
        breaker, adaptive = status
        if breaker is not None:
            response.circuit_breaker.CopyFrom(_breaker(breaker))
        if adaptive is not None:
            response.adaptive.CopyFrom(_adaptive(adaptive))
        return response

    async def _decide(
        self, domain: str, descriptors: Sequence[pb.Descriptor], hits: int, peek: bool
    ) -> pb.CheckResponse:
        _domain(domain)
        self._decider.domain(domain)
        # decide validates the requests (as field `descriptors`): no second pass here
        verdicts = await self._decider.decide(domain, self._parse(descriptors, hits), peek=peek)
        response = pb.CheckResponse()
        over = False
        decisions = response.decisions
        templates = self._templates
        if len(templates) > _MAX_CACHED:
            templates.clear()
        for verdict in verdicts:
            # filled in place: building messages and then a list of them copies each one
            key = (
                verdict.over_limit,
                verdict.reason,
                verdict.label,
                verdict.shadow,
                id(verdict.rule),
            )
            entry = templates.get(key)
            if entry is None:
                entry = templates[key] = (verdict.rule, _template(verdict))
            template = entry[1]
            decision = decisions.add()
            decision.MergeFrom(template)
            _fill_state(decision, verdict)
            over = over or verdict.over_limit
        response.overall_code = pb.CODE_OVER_LIMIT if over else pb.CODE_OK
        return response

    def _parse(self, descriptors: Sequence[pb.Descriptor], hits: int) -> list[DescriptorRequest]:
        parsed = self._parsed
        if len(parsed) > _MAX_CACHED:
            parsed.clear()
        requests = []
        for descriptor in descriptors:
            key = (descriptor.SerializeToString(), hits)
            request = parsed.get(key)
            if request is None:
                request = parsed[key] = _request(descriptor, hits)
            requests.append(request)
        return requests


# What a decision's template depends on: the outcome, reason, label, shadow mode and rule (id).
_TemplateKey = tuple[bool, str, str, bool, int]


def _domain(domain: str) -> None:
    if not domain:
        raise ValidationError.for_field("domain", "must be set")


def _requests(
    descriptors: Sequence[pb.Descriptor],
    hits: int,
    *,
    field: str = "descriptors",
    validate: bool = True,
) -> list[DescriptorRequest]:
    requests = [_request(descriptor, hits) for descriptor in descriptors]
    if validate:
        validate_requests(requests, field)
    return requests


def _request(descriptor: pb.Descriptor, hits: int) -> DescriptorRequest:
    entries = tuple([(entry.key, entry.value) for entry in descriptor.entries])
    return DescriptorRequest(entries, descriptor.hits or hits)


def _decision(verdict: Verdict) -> pb.Decision:
    decision = pb.Decision()
    _fill(decision, verdict)
    return decision


def _fill(decision: pb.Decision, verdict: Verdict) -> None:
    decision.MergeFrom(_template(verdict))
    _fill_state(decision, verdict)


def _template(verdict: Verdict) -> pb.Decision:
    # The fields that depend only on the rule and the outcome, not on the limiter's state.
    decision = pb.Decision(
        code=pb.CODE_OVER_LIMIT if verdict.over_limit else pb.CODE_OK,
        reason=verdict.reason,
        rule=verdict.label,
        shadow_mode=verdict.shadow,
    )
    rule = verdict.rule
    if rule is not None and not rule.unlimited:
        decision.algorithm = rule.algorithm
        decision.limit = rule.requests_per_unit
        set_duration(decision.period, rule.period_s)
    return decision


def _fill_state(decision: pb.Decision, verdict: Verdict) -> None:
    # The limiter's, the breaker's and the adaptive limit's state, over a template's fields.
    state = verdict.decision
    if state is not None:
        decision.remaining = state.remaining
        if not state.allowed:  # an admitted decision has no retry_after to write
            set_duration(decision.retry_after, state.retry_after_s)
        set_duration(decision.reset_after, state.reset_after_s)
        if state.delay_s > 0:
            set_duration(decision.delay, state.delay_s)
        if state.lease:  # mostly empty: proto3's default, nothing to write
            decision.lease = state.lease
    elif verdict.breaker is not None and not verdict.breaker.allowed:
        set_duration(decision.retry_after, verdict.breaker.retry_after_s)
    if verdict.breaker is not None:
        decision.circuit_breaker.CopyFrom(_breaker(verdict.breaker))
    if verdict.adaptive is not None:
        decision.adaptive.CopyFrom(_adaptive(verdict.adaptive))
        decision.limit = verdict.adaptive.limit


def _adaptive(state: AdaptiveState) -> pb.AdaptiveLimit:
    message = pb.AdaptiveLimit(
        strategy=state.strategy,
        limit=state.limit,
        error_ratio=state.error_ratio,
        samples=state.samples,
    )
    set_duration(message.latency, state.latency_s)
    set_duration(message.baseline_latency, state.baseline_latency_s)
    return message


def _breaker(status: BreakerStatus) -> pb.CircuitBreaker:
    return pb.CircuitBreaker(
        state=status.state,
        calls=status.calls,
        bad_calls=status.bad_calls,
        strategy=status.strategy,
    )


def set_duration(target: duration_pb2.Duration, seconds: float) -> None:
    """Write seconds into a Duration field in place; infinity (never) is written as 0."""
    if 0 < seconds < math.inf:  # false for NaN too
        target.seconds, target.nanos = divmod(round(seconds * 1e9), 1_000_000_000)
    else:
        target.SetInParent()
