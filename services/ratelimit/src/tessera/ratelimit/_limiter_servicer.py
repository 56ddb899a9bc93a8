from __future__ import annotations

from collections.abc import Sequence

import grpc

from tessera.core import ValidationError
from tessera.proto.ratelimit.v1 import ratelimit_pb2 as pb
from tessera.proto.ratelimit.v1 import ratelimit_pb2_grpc
from tessera.ratelimit._check_request import split_check_request
from tessera.ratelimit._decider import Decider, DescriptorRequest, validate_requests
from tessera.ratelimit._decision_message import (
    adaptive_message,
    breaker_message,
    decision_message,
    set_duration,
)
from tessera.ratelimit._decision_wire import DecisionWriter
from tessera.ratelimit._match import match
from tessera.ratelimit._quota import DEFAULT_LEASE_TTL_S

#: Full name of Tessera's rate-limit service.
RATE_LIMITER_SERVICE = "tessera.ratelimit.v1.RateLimiter"
#: Parsed descriptors kept (about 0.5 KiB a descriptor); past it they are computed afresh, so a
#: burst of unique descriptors costs a re-parse, never unbounded memory.
_MAX_CACHED = 16_384

_Context = grpc.aio.ServicerContext[object, object]


class RateLimiterServicer(ratelimit_pb2_grpc.RateLimiterServicer):
    """`tessera.ratelimit.v1.RateLimiter`: Check, Peek, Reset, Explain, Release, Lease, Report.

    Unlike Envoy's API, an unknown domain is NOT_FOUND. Check and Peek take and return wire
    bytes: register the servicer with `add_rate_limiter_to_server`, which passes them through.

    Args:
        decider: Matches and evaluates the descriptors.

    """

    def __init__(self, decider: Decider) -> None:
        self._decider = decider
        # Reading a descriptor's entries through protobuf costs four times slicing its bytes: hot
        # descriptors are parsed once, keyed by their wire bytes and the request's hits.
        self._parsed: dict[tuple[bytes, int], DescriptorRequest] = {}
        self._writer = DecisionWriter()

    # The generated base class declares the messages; these take the request's wire bytes and
    # return the response's, which add_rate_limiter_to_server passes through as they are.
    async def Check(self, request: bytes, context: _Context) -> bytes:  # type: ignore[override]  # noqa: N802 - gRPC name
        """Count and decide every descriptor of a serialized CheckRequest in one Redis round trip.

        Returns:
            The serialized CheckResponse.

        """
        domain, descriptors, hits = split_check_request(request)
        return await self._decide(domain, descriptors, hits or 1, False)

    async def Peek(self, request: bytes, context: _Context) -> bytes:  # type: ignore[override]  # noqa: N802 - gRPC name
        """Decide every descriptor of a serialized PeekRequest without counting.

        Returns:
            The serialized CheckResponse.

        """
        domain, descriptors, _ = split_check_request(request)  # a PeekRequest has no hits
        return await self._decide(domain, descriptors, 1, True)

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
            decision=decision_message(verdict),
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
            granted=quota.granted, lease=quota.lease, decision=decision_message(quota.verdict)
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
            response.circuit_breaker.CopyFrom(breaker_message(breaker))
        if adaptive is not None:
            response.adaptive.CopyFrom(adaptive_message(adaptive))
        return response

    async def _decide(
        self, domain: str, descriptors: Sequence[bytes], hits: int, peek: bool
    ) -> bytes:
        # parsed first: a malformed descriptor fails the call as gRPC's deserializer did
        requests = self._parse(descriptors, hits)
        _domain(domain)
        self._decider.domain(domain)
        # decide validates the requests (as field `descriptors`): no second pass here
        verdicts = await self._decider.decide(domain, requests, peek=peek)
        return self._writer.check_response(verdicts)

    def _parse(self, descriptors: Sequence[bytes], hits: int) -> list[DescriptorRequest]:
        # Each descriptor's wire bytes and the request's hits name its parsed request.
        parsed = self._parsed
        if len(parsed) > _MAX_CACHED:
            parsed.clear()
        requests = []
        for descriptor in descriptors:
            key = (descriptor, hits)
            request = parsed.get(key)
            if request is None:
                request = parsed[key] = _request(pb.Descriptor.FromString(descriptor), hits)
            requests.append(request)
        return requests


def _domain(domain: str) -> None:
    if not domain:
        raise ValidationError.for_field("domain", "must be set")


def _requests(
    descriptors: Sequence[pb.Descriptor], hits: int, *, field: str = "descriptors"
) -> list[DescriptorRequest]:
    requests = [_request(descriptor, hits) for descriptor in descriptors]
    validate_requests(requests, field)
    return requests


def _request(descriptor: pb.Descriptor, hits: int) -> DescriptorRequest:
    entries = tuple([(entry.key, entry.value) for entry in descriptor.entries])
    return DescriptorRequest(entries, descriptor.hits or hits)


def add_rate_limiter_to_server(servicer: RateLimiterServicer, server: grpc.aio.Server) -> None:
    """Register `servicer` as `tessera.ratelimit.v1.RateLimiter` on `server`.

    Like the generated `add_RateLimiterServicer_to_server`, except that Check and Peek take the
    request's wire bytes and return the response's (no deserializer, no serializer).
    """
    handlers = {}
    # every method of the service is unary-unary
    for method in pb.DESCRIPTOR.services_by_name["RateLimiter"].methods:
        response = getattr(pb, method.output_type.name)
        wire = method.name in _WIRE_METHODS
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=None if wire else getattr(pb, method.input_type.name).FromString,
            response_serializer=None if wire else response.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(RATE_LIMITER_SERVICE, handlers),)
    )
    server.add_registered_method_handlers(RATE_LIMITER_SERVICE, handlers)


#: The methods whose servicer takes the request's and returns the response's wire bytes.
_WIRE_METHODS = frozenset({"Check", "Peek"})
