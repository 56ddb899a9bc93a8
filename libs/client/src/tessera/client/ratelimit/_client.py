from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Self

import grpc
from google.protobuf import duration_pb2

from tessera.client._channel import ChannelClient
from tessera.client._rpc_errors import translated
from tessera.core import ValidationError
from tessera.proto.ratelimit.v1 import ratelimit_pb2 as pb
from tessera.proto.ratelimit.v1 import ratelimit_pb2_grpc

#: A descriptor: its entries in order, as a mapping (`{"user": "42"}`) or (key, value) pairs.
DescriptorLike = Mapping[str, str] | Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class CircuitBreakerState:
    """A circuit breaker's state, shared by every replica of the service.

    Attributes:
        state: `closed`, `open` or `half_open`.
        calls: Outcomes in its ring-buffer window (closed only).
        bad_calls: Bad outcomes among them (failures, or slow calls for `slow_call_ratio`).
        strategy: `error_ratio`, `slow_call_ratio` or `error_count`.

    """

    state: str
    calls: int
    bad_calls: int
    strategy: str


@dataclass(frozen=True, slots=True)
class AdaptiveUsage:
    """What the last step of an adaptive limit saw of its rule's aggregated usage (the feed).

    The service's `aggregate_usage` job publishes every rule's decision rates each minute; an
    outcome that would raise the limit is held back while the demand uses less than half of
    it (docs/ratelimit.md, "Usage-aware increase").

    Attributes:
        offered_per_s: Decisions per second the rule counted, within and over the limit (the
            demand).
        admitted_per_s: Decisions per second within the limit.
        denied_per_s: Decisions per second over the limit.
        window_s: The time the rates are averaged over.
        utilisation: Demand over the limit in force before the step: `offered_per_s * period`
            for a rate, `offered_per_s * latency` (units in flight) for a concurrency limit.
        increase_held: The step would have raised the limit, but the utilisation was below
            0.5, so the limit stayed.

    """

    offered_per_s: float
    admitted_per_s: float
    denied_per_s: float
    window_s: float
    utilisation: float
    increase_held: bool


@dataclass(frozen=True, slots=True)
class AdaptiveLimitState:
    """An adaptive limit's state, shared by every replica of the service.

    Attributes:
        strategy: `aimd` or `gradient`.
        limit: The limit in force, within the rule's bounds.
        latency_s: Moving average of recent latency.
        baseline_latency_s: Its ten times slower moving average.
        error_ratio: Moving average of failures, in [0, 1].
        samples: Outcomes reported so far.
        usage: The rule's usage the last outcome's step saw; None before any outcome, or while
            the service publishes no usage feed (the limit then moves by outcomes alone).

    """

    strategy: str
    limit: int
    latency_s: float
    baseline_latency_s: float
    error_ratio: float
    samples: int
    usage: AdaptiveUsage | None = None


@dataclass(frozen=True, slots=True)
class OutcomeResult:
    """What a reported outcome did to the target's rule.

    Attributes:
        circuit_breaker: The breaker's state after it, when the rule has a breaker.
        adaptive: The adaptive limit after it, when the rule has one.

    """

    circuit_breaker: CircuitBreakerState | None
    adaptive: AdaptiveLimitState | None


@dataclass(frozen=True, slots=True)
class Decision:
    """The service's decision for one descriptor.

    Attributes:
        allowed: Whether the request may go on.
        reason: Why (`"within limit"`, `"over limit"`, `"no rule"`, `"deny list"`, ...).
        rule: The matched rule's name or configuration path; empty for no rule.
        algorithm: The rule's limiter; empty when nothing was counted.
        limit: Units allowed per `period_s`.
        period_s: The rule's period in seconds.
        remaining: Units left after this decision.
        retry_after_s: When denied, seconds until the same request may pass.
        reset_after_s: Seconds until the full allowance is back.
        shadow_mode: Whether the rule only reports.
        delay_s: When admitted by a shaping rule (leaky_bucket), seconds to wait before going
            on so that admitted traffic leaves at the rule's rate; else 0.
        lease: When admitted by a rule holding units until released (concurrency), the lease to
            give to `RateLimiter.release`; else "".
        circuit_breaker: The state of the rule's circuit breaker, when it has one.
        adaptive: The state of the rule's adaptive limit, when it has one (`limit` is then the
            adapted one).

    """

    allowed: bool
    reason: str
    rule: str
    algorithm: str
    limit: int
    period_s: float
    remaining: int
    retry_after_s: float
    reset_after_s: float
    shadow_mode: bool
    delay_s: float = 0.0
    lease: str = ""
    circuit_breaker: CircuitBreakerState | None = None
    adaptive: AdaptiveLimitState | None = None


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The answer to a Check or Peek.

    Attributes:
        allowed: Whether every descriptor is within its limit.
        decisions: One per descriptor, in request order.

    """

    allowed: bool
    decisions: tuple[Decision, ...]

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True, slots=True)
class Grant:
    """Tokens the service granted to spend without asking (one Lease).

    Attributes:
        granted: Tokens granted, 0 to the number asked (fewer when fewer were left).
        lease: What `RateLimiter.release(..., unused=n)` takes to give tokens back; empty when
            nothing was counted (no rule, unlimited, allow list, failing open).
        valid_s: How long the tokens may be spent, from `sent_at`.
        decision: The rule, its reason and state after the grant (`retry_after_s` when
            nothing was granted).
        sent_at: `time.monotonic()` just before the request was sent: the tokens expire at
            `sent_at + valid_s`, never after the service's own deadline.

    """

    granted: int
    lease: str
    valid_s: float
    decision: Decision
    sent_at: float


@dataclass(frozen=True, slots=True)
class Explanation:
    """Which rule matches a descriptor and why.

    Attributes:
        matched: Whether a rule with a limit matched.
        steps: The matching steps, in words.
        decision: The current decision (nothing counted).
        config_version: Version of the domain's configuration that answered.

    """

    matched: bool
    steps: tuple[str, ...]
    decision: Decision
    config_version: str


class RateLimiter(ChannelClient):
    """Async client of `tessera.ratelimit.v1.RateLimiter`.

    Example::

        async with RateLimiter.connect("127.0.0.1:50053") as limiter:
            if not await limiter.check("api", [{"user": "42"}]):
                raise TooManyRequests()

    Concurrency: one client serves any number of tasks of its event loop.

    Args:
        channel: A grpc.aio channel to the service; closed by `close` when `owns_channel`.
        timeout_s: Deadline of each call.
        owns_channel: Whether `close` closes the channel.

    """

    def __init__(
        self, channel: grpc.aio.Channel, *, timeout_s: float = 1.0, owns_channel: bool = False
    ) -> None:
        super().__init__(channel, owns_channel=owns_channel)
        self._stub = ratelimit_pb2_grpc.RateLimiterStub(channel)
        self._timeout_s = timeout_s

    @classmethod
    def connect(cls, target: str, *, timeout_s: float = 1.0) -> Self:
        """Open a plain-text channel to `host:port` (connected lazily) and a client on it."""
        return cls(grpc.aio.insecure_channel(target), timeout_s=timeout_s, owns_channel=True)

    async def check(
        self, domain: str, descriptors: Iterable[DescriptorLike], *, hits: int = 1
    ) -> CheckResult:
        """Count `hits` for every descriptor and decide them, in one call.

        Raises:
            ValidationError: A descriptor is malformed (names the field).
            NotFoundError: The domain is not configured.
            UnavailableError: The service cannot be reached (retryable).

        """
        request = pb.CheckRequest(domain=domain, descriptors=_descriptors(descriptors), hits=hits)
        return _result(await translated(self._stub.Check(request, timeout=self._timeout_s)))

    async def peek(self, domain: str, descriptors: Iterable[DescriptorLike]) -> CheckResult:
        """Decide like `check` without counting anything (same errors)."""
        request = pb.PeekRequest(domain=domain, descriptors=_descriptors(descriptors))
        return _result(await translated(self._stub.Peek(request, timeout=self._timeout_s)))

    async def reset(self, domain: str, descriptors: Iterable[DescriptorLike]) -> int:
        """Delete the descriptors' counters; returns how many existed (same errors as `check`)."""
        request = pb.ResetRequest(domain=domain, descriptors=_descriptors(descriptors))
        return (await translated(self._stub.Reset(request, timeout=self._timeout_s))).deleted

    async def explain(self, domain: str, descriptor: DescriptorLike) -> Explanation:
        """Tell which rule matches `descriptor`, why, and its state (same errors as `check`)."""
        [message] = _descriptors([descriptor])
        request = pb.ExplainRequest(domain=domain, descriptor=message)
        response = await translated(self._stub.Explain(request, timeout=self._timeout_s))
        return Explanation(
            matched=response.matched,
            steps=tuple(response.steps),
            decision=_decision(response.decision),
            config_version=response.config_version,
        )

    async def release(
        self, domain: str, descriptor: DescriptorLike, lease: str, *, unused: int = 0
    ) -> bool:
        """Give back the units `lease` holds.

        `lease` is a `Decision.lease` of a concurrency rule (all its units are freed) or a
        `Grant.lease` of a quota lease (its `unused` tokens are given back).

        Returns:
            Whether the lease was still held (a quota lease: whether tokens were counted back,
            False when its window is over); False when released before or expired.

        Raises:
            ValidationError: The lease is malformed (field `lease`), `unused` exceeds what the
                quota lease granted (field `unused`), or the descriptor matches no rule whose
                algorithm holds such leases (field `descriptor`).
            NotFoundError: The domain is not configured.
            UnavailableError: The service or its Redis cannot be reached (retryable); the lease
                then expires after the rule's period.

        """
        [message] = _descriptors([descriptor])
        if unused < 0:
            raise ValidationError.for_field("unused", "must be >= 0")
        request = pb.ReleaseRequest(domain=domain, descriptor=message, lease=lease, unused=unused)
        return (await translated(self._stub.Release(request, timeout=self._timeout_s))).released

    async def lease(
        self, domain: str, descriptor: DescriptorLike, tokens: int, *, ttl_s: float = 1.0
    ) -> Grant:
        """Take up to `tokens` of the descriptor's rule at once, to spend without asking.

        The tokens are counted by the service when granted. `Grant.valid_s` is counted from
        just before the request was sent; spend them before it passes. `quota` does all this
        bookkeeping (renewal, expiry, giving back).

        Raises:
            ValidationError: `tokens` (field `tokens`) or `ttl_s` (field `ttl`, at most 60 s)
                is out of range, or the rule cannot lease (field `descriptor`: a circuit
                breaker, an adaptive limit, or an algorithm that does not grant, such as
                `concurrency`, whose units are in flight rather than a quota; every other
                built-in algorithm grants).
            NotFoundError: The domain is not configured.
            UnavailableError: The service cannot be reached (retryable).

        """
        [message] = _descriptors([descriptor])
        request = pb.LeaseRequest(domain=domain, descriptor=message, tokens=tokens)
        request.ttl.FromNanoseconds(round(ttl_s * 1e9))
        sent = time.monotonic()
        response = await translated(self._stub.Lease(request, timeout=self._timeout_s))
        return Grant(
            granted=response.granted,
            lease=response.lease,
            valid_s=_seconds(response.valid_for),
            decision=_decision(response.decision),
            sent_at=sent,
        )

    async def report_outcome(
        self, domain: str, target: DescriptorLike, *, success: bool, latency_s: float = 0.0
    ) -> OutcomeResult:
        """Feed one protected call's outcome to the circuit breaker and adaptive limit of `target`.

        Returns:
            The breaker's and the adaptive limit's states after this outcome.

        Raises:
            ValidationError: `target` matches no rule with a circuit breaker or an adaptive limit
                (field `target`), or `latency_s` is negative (field `latency`).
            NotFoundError: The domain is not configured.
            UnavailableError: The service or its Redis cannot be reached (retryable).

        """
        [message] = _descriptors([target])
        if latency_s < 0:
            raise ValidationError.for_field("latency", "must be >= 0")
        request = pb.ReportOutcomeRequest(domain=domain, target=message, success=success)
        request.latency.FromNanoseconds(round(latency_s * 1e9))
        response = await translated(self._stub.ReportOutcome(request, timeout=self._timeout_s))
        return OutcomeResult(
            circuit_breaker=_breaker(response.circuit_breaker)
            if response.HasField("circuit_breaker")
            else None,
            adaptive=_adaptive(response.adaptive) if response.HasField("adaptive") else None,
        )


def _descriptors(descriptors: Iterable[DescriptorLike]) -> list[pb.Descriptor]:
    messages = []
    for descriptor in descriptors:
        pairs = descriptor.items() if isinstance(descriptor, Mapping) else descriptor
        messages.append(pb.Descriptor(entries=[pb.Entry(key=k, value=v) for k, v in pairs]))
    return messages


def _result(response: pb.CheckResponse) -> CheckResult:
    return CheckResult(
        allowed=response.overall_code != pb.CODE_OVER_LIMIT,
        decisions=tuple(_decision(d) for d in response.decisions),
    )


def _decision(decision: pb.Decision) -> Decision:
    over = decision.code == pb.CODE_OVER_LIMIT
    return Decision(
        allowed=not over,
        reason=decision.reason,
        rule=decision.rule,
        algorithm=decision.algorithm,
        limit=decision.limit,
        period_s=_seconds(decision.period),
        remaining=decision.remaining,
        retry_after_s=_seconds(decision.retry_after) if over else 0.0,
        reset_after_s=_seconds(decision.reset_after),
        shadow_mode=decision.shadow_mode,
        delay_s=_seconds(decision.delay),
        lease=decision.lease,
        circuit_breaker=_breaker(decision.circuit_breaker)
        if decision.HasField("circuit_breaker")
        else None,
        adaptive=_adaptive(decision.adaptive) if decision.HasField("adaptive") else None,
    )


def _adaptive(message: pb.AdaptiveLimit) -> AdaptiveLimitState:
    return AdaptiveLimitState(
        strategy=message.strategy,
        limit=message.limit,
        latency_s=_seconds(message.latency),
        baseline_latency_s=_seconds(message.baseline_latency),
        error_ratio=message.error_ratio,
        samples=message.samples,
        usage=_usage(message.usage) if message.HasField("usage") else None,
    )


def _usage(message: pb.AdaptiveUsage) -> AdaptiveUsage:
    return AdaptiveUsage(
        offered_per_s=message.offered_per_s,
        admitted_per_s=message.admitted_per_s,
        denied_per_s=message.denied_per_s,
        window_s=_seconds(message.window),
        utilisation=message.utilisation,
        increase_held=message.increase_held,
    )


def _breaker(message: pb.CircuitBreaker) -> CircuitBreakerState:
    return CircuitBreakerState(
        state=message.state,
        calls=message.calls,
        bad_calls=message.bad_calls,
        strategy=message.strategy,
    )


def _seconds(duration: duration_pb2.Duration) -> float:
    return duration.seconds + duration.nanos / 1e9
