from __future__ import annotations

import math

import grpc
from envoy.config.core.v3 import base_pb2  # type: ignore[import-untyped]  # xds-protos has no stubs
from envoy.service.ratelimit.v3 import (  # type: ignore[import-untyped]  # xds-protos has no stubs
    rls_pb2,
    rls_pb2_grpc,
)

from tessera.core import ValidationError
from tessera.ratelimit._decider import Decider, DescriptorRequest, Verdict, override_rule
from tessera.ratelimit._decision_message import set_duration

#: Full name of Envoy's rate-limit service.
ENVOY_SERVICE = "envoy.service.ratelimit.v3.RateLimitService"

_Response = rls_pb2.RateLimitResponse
_UNITS = _Response.RateLimit.Unit


class EnvoyRateLimitServicer(rls_pb2_grpc.RateLimitServiceServicer):  # type: ignore[misc]  # untyped base
    """`envoy.service.ratelimit.v3.RateLimitService`, wire-compatible with Envoy's filter.

    Honours per-descriptor `limit` overrides and `hits_addend` (request-level, and the
    per-descriptor value when set), answers `overall_code` and one status per descriptor with
    `current_limit`, `limit_remaining` and `duration_until_reset`, and adds `RateLimit-Limit`,
    `RateLimit-Remaining` and `RateLimit-Reset` response headers for the most constrained
    descriptor. Unknown domains and unmatched descriptors are OK, as in envoyproxy/ratelimit.

    Args:
        decider: Matches and evaluates the descriptors.

    """

    def __init__(self, decider: Decider) -> None:
        self._decider = decider

    async def ShouldRateLimit(  # noqa: N802 - the gRPC method name
        self, request: rls_pb2.RateLimitRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> rls_pb2.RateLimitResponse:
        """Decide every descriptor of the request, counting its hits."""
        if not request.domain:
            raise ValidationError.for_field("domain", "must be set")
        default_hits = request.hits_addend or 1
        requests = []
        for index, descriptor in enumerate(request.descriptors):
            override = None
            if descriptor.HasField("limit"):
                field = f"descriptors[{index}].limit"
                unit = descriptor.limit.unit
                if unit == _UNITS.UNKNOWN:
                    raise ValidationError.for_field(f"{field}.unit", "must be set")
                override = override_rule(
                    descriptor.limit.requests_per_unit, _UNITS.Name(unit), field
                )
            hits = default_hits
            if descriptor.HasField("hits_addend") and descriptor.hits_addend.value > 0:
                hits = descriptor.hits_addend.value
            entries = tuple((entry.key, entry.value) for entry in descriptor.entries)
            requests.append(DescriptorRequest(entries, hits, override))
        verdicts = await self._decider.decide(request.domain, requests)
        response = _Response(
            overall_code=_Response.OVER_LIMIT
            if any(v.over_limit for v in verdicts)
            else _Response.OK,
            statuses=[_status(verdict) for verdict in verdicts],
        )
        response.response_headers_to_add.extend(_headers(verdicts))
        return response


def _status(verdict: Verdict) -> rls_pb2.RateLimitResponse.DescriptorStatus:
    status = _Response.DescriptorStatus(
        code=_Response.OVER_LIMIT if verdict.over_limit else _Response.OK
    )
    if verdict.rule is not None and not verdict.rule.unlimited:
        status.current_limit.CopyFrom(
            _Response.RateLimit(
                name=verdict.rule.name,
                # the limit in force: an adaptive rule's moves within its bounds
                requests_per_unit=verdict.decision.limit
                if verdict.decision is not None
                else verdict.rule.requests_per_unit,
                unit=_UNITS.Value(verdict.rule.unit.upper()),
            )
        )
    if verdict.decision is not None:
        status.limit_remaining = verdict.decision.remaining
        set_duration(status.duration_until_reset, verdict.decision.reset_after_s)
    return status


def _headers(verdicts: list[Verdict]) -> list[base_pb2.HeaderValue]:
    counted = [v for v in verdicts if v.decision is not None and v.rule is not None]
    if not counted:
        return []
    tightest = min(counted, key=lambda v: v.decision.remaining if v.decision else 0)
    assert tightest.decision is not None
    assert tightest.rule is not None
    return [
        base_pb2.HeaderValue(key="RateLimit-Limit", value=str(tightest.decision.limit)),
        base_pb2.HeaderValue(key="RateLimit-Remaining", value=str(tightest.decision.remaining)),
        base_pb2.HeaderValue(
            key="RateLimit-Reset", value=str(math.ceil(tightest.decision.reset_after_s))
        ),
    ]
