from __future__ import annotations

import math

from google.protobuf import duration_pb2

from tessera.proto.ratelimit.v1 import ratelimit_pb2 as pb
from tessera.ratelimit._adaptive import AdaptiveState
from tessera.ratelimit._breaker import BreakerStatus
from tessera.ratelimit._decider import Verdict

# A verdict as a `tessera.ratelimit.v1.Decision` message: for Explain and Lease, and for the
# verdicts `_decision_wire` does not write itself (with a circuit breaker or an adaptive limit).


def decision_message(verdict: Verdict) -> pb.Decision:
    """Return the whole Decision of `verdict`."""
    decision = template_message(verdict)
    _fill_state(decision, verdict)
    return decision


def template_message(verdict: Verdict) -> pb.Decision:
    """Return the fields of `verdict`'s Decision that depend only on its rule and outcome.

    The same for every verdict with the same outcome, reason, label, shadow mode and rule; the
    limiter's, breaker's and adaptive limit's state are not in it.
    """
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
        decision.circuit_breaker.CopyFrom(breaker_message(verdict.breaker))
    if verdict.adaptive is not None:
        decision.adaptive.CopyFrom(adaptive_message(verdict.adaptive))
        decision.limit = verdict.adaptive.limit


def adaptive_message(state: AdaptiveState) -> pb.AdaptiveLimit:
    message = pb.AdaptiveLimit(
        strategy=state.strategy,
        limit=state.limit,
        error_ratio=state.error_ratio,
        samples=state.samples,
    )
    set_duration(message.latency, state.latency_s)
    set_duration(message.baseline_latency, state.baseline_latency_s)
    if state.usage is not None:  # the aggregated usage the last step saw
        rates, usage = state.usage.rates, message.usage
        usage.offered_per_s, usage.admitted_per_s = rates.offered_per_s, rates.admitted_per_s
        usage.denied_per_s, usage.utilisation = rates.denied_per_s, state.usage.utilisation
        usage.increase_held = state.usage.increase_held
        set_duration(usage.window, rates.window_s)
    return message


def breaker_message(status: BreakerStatus) -> pb.CircuitBreaker:
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
