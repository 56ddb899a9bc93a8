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
from tessera.ratelimit._decider import Decider, DescriptorRequest, Verdict, validate_requests
from tessera.ratelimit._match import match

#: Full name of Tessera's rate-limit service.
RATE_LIMITER_SERVICE = "tessera.ratelimit.v1.RateLimiter"

_Context = grpc.aio.ServicerContext[object, object]


class RateLimiterServicer(ratelimit_pb2_grpc.RateLimiterServicer):
    """`tessera.ratelimit.v1.RateLimiter`: Check, Peek, Reset, Explain, Release, ReportOutcome.

    Unlike Envoy's API, an unknown domain is NOT_FOUND.

    Args:
        decider: Matches and evaluates the descriptors.

    """

    def __init__(self, decider: Decider) -> None:
        self._decider = decider

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
        decision = await self._decider.release(request.domain, descriptor, request.lease)
        return pb.ReleaseResponse(released=decision.allowed, remaining=decision.remaining)

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
        verdicts = await self._decider.decide(domain, _requests(descriptors, hits), peek=peek)
        over = any(v.over_limit for v in verdicts)
        return pb.CheckResponse(
            overall_code=pb.CODE_OVER_LIMIT if over else pb.CODE_OK,
            decisions=[_decision(v) for v in verdicts],
        )


def _domain(domain: str) -> None:
    if not domain:
        raise ValidationError.for_field("domain", "must be set")


def _requests(
    descriptors: Sequence[pb.Descriptor], hits: int, *, field: str = "descriptors"
) -> list[DescriptorRequest]:
    requests = [
        DescriptorRequest(
            tuple((entry.key, entry.value) for entry in descriptor.entries),
            descriptor.hits or hits,
        )
        for descriptor in descriptors
    ]
    validate_requests(requests, field)
    return requests


def _decision(verdict: Verdict) -> pb.Decision:
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
    if verdict.decision is not None:
        decision.remaining = verdict.decision.remaining
        set_duration(decision.retry_after, verdict.decision.retry_after_s)
        set_duration(decision.reset_after, verdict.decision.reset_after_s)
        if verdict.decision.delay_s > 0:
            set_duration(decision.delay, verdict.decision.delay_s)
        decision.lease = verdict.decision.lease
    elif verdict.breaker is not None and not verdict.breaker.allowed:
        set_duration(decision.retry_after, verdict.breaker.retry_after_s)
    if verdict.breaker is not None:
        decision.circuit_breaker.CopyFrom(_breaker(verdict.breaker))
    if verdict.adaptive is not None:
        decision.adaptive.CopyFrom(_adaptive(verdict.adaptive))
        decision.limit = verdict.adaptive.limit
    return decision


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
    if math.isfinite(seconds) and seconds > 0:
        target.seconds, target.nanos = divmod(round(seconds * 1e9), 1_000_000_000)
    else:
        target.SetInParent()
