import uuid

import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2 as common_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tessera.proto.ratelimit.v1 import ratelimit_pb2 as pb
from tessera.proto.ratelimit.v1 import ratelimit_pb2_grpc


def unique(prefix: str = "v") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def envoy_request(
    domain: str, *descriptors: dict[str, str], hits: int = 0
) -> rls_pb2.RateLimitRequest:
    return rls_pb2.RateLimitRequest(
        domain=domain,
        hits_addend=hits,
        descriptors=[
            common_pb2.RateLimitDescriptor(
                entries=[common_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in d.items()]
            )
            for d in descriptors
        ],
    )


def descriptor(hits: int = 0, **entries: str) -> pb.Descriptor:
    return pb.Descriptor(entries=[pb.Entry(key=k, value=v) for k, v in entries.items()], hits=hits)


def field_violations(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields.extend(v.field for v in bad.field_violations)
    return fields


def envoy_stub(running) -> rls_pb2_grpc.RateLimitServiceStub:
    return rls_pb2_grpc.RateLimitServiceStub(running.channel)


def limiter_stub(running) -> ratelimit_pb2_grpc.RateLimiterStub:
    return ratelimit_pb2_grpc.RateLimiterStub(running.channel)


OK, OVER = rls_pb2.RateLimitResponse.OK, rls_pb2.RateLimitResponse.OVER_LIMIT


async def test_ratelimit_envoy_config_gives_fixed_window_decisions(start_ratelimit) -> None:
    async with start_ratelimit() as (running, _):
        stub = envoy_stub(running)
        ip = unique("10.0.0")
        responses = [
            await stub.ShouldRateLimit(envoy_request("edge_proxy_per_ip", {"remote_address": ip}))
            for _ in range(12)
        ]
        assert [r.overall_code for r in responses] == [OK] * 10 + [OVER] * 2
        statuses = [r.statuses[0] for r in responses]
        assert [s.limit_remaining for s in statuses] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0, 0]
        assert statuses[0].current_limit.requests_per_unit == 10
        assert statuses[0].current_limit.unit == rls_pb2.RateLimitResponse.RateLimit.HOUR
        assert 0 < statuses[0].duration_until_reset.ToTimedelta().total_seconds() <= 3600
        headers = {h.key: h.value for h in responses[0].response_headers_to_add}
        assert headers["RateLimit-Limit"] == "10"
        assert headers["RateLimit-Remaining"] == "9"
        blocked = await stub.ShouldRateLimit(
            envoy_request("edge_proxy_per_ip", {"remote_address": "50.0.0.5"})
        )
        assert blocked.overall_code == OVER


async def test_ratelimit_envoy_nested_unlimited_shadow_and_unknown(start_ratelimit) -> None:
    async with start_ratelimit() as (running, _):
        stub = envoy_stub(running)
        number = unique("555")
        request = envoy_request(
            "messaging",
            {"message_type": "marketing", "to_number": number},
            {"to_number": number},
            {"internal": "yes"},
            {"trial": number},
            {"nothing": "matches"},
        )
        responses = [await stub.ShouldRateLimit(request) for _ in range(6)]
        assert [r.overall_code for r in responses] == [OK] * 5 + [OVER]
        last = responses[-1].statuses
        assert [s.code for s in last] == [OVER, OK, OK, OK, OK]
        assert last[0].current_limit.requests_per_unit == 5
        assert last[1].limit_remaining == 94  # counted on every call, 100 a day
        assert not last[2].HasField("current_limit")  # unlimited
        assert last[3].current_limit.requests_per_unit == 1  # shadow mode: over, still OK
        assert not last[4].HasField("current_limit")
        unknown = await stub.ShouldRateLimit(envoy_request("no-such-domain", {"a": "b"}))
        assert unknown.overall_code == OK


async def test_ratelimit_envoy_wildcard_and_replaces(start_ratelimit) -> None:
    async with start_ratelimit() as (running, _):
        stub = envoy_stub(running)
        path = f"/api/{unique()}"
        codes = [
            (await stub.ShouldRateLimit(envoy_request("messaging", {"path": path}))).overall_code
            for _ in range(4)
        ]
        assert codes == [OK, OK, OK, OVER]
        # key2's rule replaces the rule named "general" (2 an hour): only its 4 an hour count.
        both = envoy_request("messaging", {"key1": "value1"}, {"key2": "value2"})
        before = await stub.ShouldRateLimit(both)
        remaining = before.statuses[1].limit_remaining
        for _ in range(2):
            response = await stub.ShouldRateLimit(both)
        assert response.statuses[0].code == OK
        assert response.statuses[1].limit_remaining == max(remaining - 2, 0)


async def test_ratelimit_envoy_hits_addend_and_limit_override(start_ratelimit) -> None:
    async with start_ratelimit() as (running, _):
        stub = envoy_stub(running)
        number = unique("555")
        response = await stub.ShouldRateLimit(
            envoy_request("messaging", {"to_number": number}, hits=4)
        )
        assert response.statuses[0].limit_remaining == 96
        request = envoy_request("messaging", {"to_number": number})
        request.descriptors[0].hits_addend.value = 6
        response = await stub.ShouldRateLimit(request)
        assert response.statuses[0].limit_remaining == 90
        override = envoy_request("messaging", {"unmatched": unique()})
        override.descriptors[0].limit.requests_per_unit = 1
        override.descriptors[0].limit.unit = rls_pb2.RateLimitResponse.RateLimit.DAY
        codes = [(await stub.ShouldRateLimit(override)).overall_code for _ in range(2)]
        assert codes == [OK, OVER]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: setattr(r, "domain", ""), "domain"),
        (lambda r: r.descriptors.add(), "descriptors[1].entries"),
        (
            lambda r: r.descriptors[0].entries.add(key="", value="x"),
            "descriptors[0].entries[1].key",
        ),
        (
            lambda r: r.descriptors[0].limit.SetInParent(),
            "descriptors[0].limit.unit",
        ),
        (lambda r: r.descriptors.extend([r.descriptors[0]] * 100), "descriptors"),
        (
            lambda r: r.descriptors[0].entries.add(key="k", value="v" * 300),
            "descriptors[0].entries[1]",
        ),
    ],
)
async def test_ratelimit_envoy_bad_request_names_the_field(start_ratelimit, mutate, field) -> None:
    async with start_ratelimit() as (running, _):
        request = envoy_request("messaging", {"to_number": unique()})
        mutate(request)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await envoy_stub(running).ShouldRateLimit(request)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(raised.value) == [field]


async def test_ratelimit_check_mixes_algorithms_and_lists(start_ratelimit) -> None:
    async with start_ratelimit() as (running, _):
        stub = limiter_stub(running)
        tenant, user, ip = unique(), unique(), unique()
        request = pb.CheckRequest(
            domain="api",
            descriptors=[
                descriptor(tenant=tenant),
                descriptor(user=user),
                descriptor(ip=ip),
                descriptor(tenant="ops"),
                descriptor(tenant="banned"),
            ],
        )
        responses = [await stub.Check(request) for _ in range(4)]
        codes = [[d.code for d in r.decisions] for r in responses]
        ok, over = pb.CODE_OK, pb.CODE_OVER_LIMIT
        assert codes == [
            [ok, ok, ok, ok, over],
            [ok, ok, ok, ok, over],
            [ok, over, over, ok, over],
            [over, over, over, ok, over],
        ]
        first = responses[0].decisions
        assert [d.algorithm for d in first[:3]] == ["token_bucket", "sliding_window", "gcra"]
        assert [d.reason for d in first[3:]] == ["allow list", "deny list"]
        assert first[0].remaining == 2
        assert first[0].rule == "descriptors[0]"
        assert responses[-1].decisions[0].retry_after.ToTimedelta().total_seconds() > 0


async def test_ratelimit_peek_reset_and_explain(start_ratelimit) -> None:
    async with start_ratelimit() as (running, _):
        stub = limiter_stub(running)
        user = unique()
        check = pb.CheckRequest(domain="api", descriptors=[descriptor(user=user)])
        peek = pb.PeekRequest(domain="api", descriptors=[descriptor(user=user)])
        for _ in range(3):
            assert (await stub.Peek(peek)).decisions[0].remaining == 2
        await stub.Check(check)
        await stub.Check(check)
        assert (await stub.Peek(peek)).overall_code == pb.CODE_OVER_LIMIT
        explained = await stub.Explain(
            pb.ExplainRequest(domain="api", descriptor=descriptor(user=user))
        )
        assert explained.matched
        assert explained.decision.algorithm == "sliding_window"
        assert explained.decision.reason == "over limit"
        assert explained.config_version.startswith("file:")
        assert "key-only rule at descriptors[1]" in explained.steps[0]
        reset = await stub.Reset(pb.ResetRequest(domain="api", descriptors=[descriptor(user=user)]))
        assert reset.deleted == 1
        assert (await stub.Check(check)).overall_code == pb.CODE_OK
        nothing = await stub.Explain(
            pb.ExplainRequest(domain="api", descriptor=descriptor(nobody="x"))
        )
        assert not nothing.matched
        assert nothing.decision.reason == "no rule"


async def test_ratelimit_check_unknown_domain_and_bad_request(start_ratelimit) -> None:
    async with start_ratelimit() as (running, _):
        stub = limiter_stub(running)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Check(pb.CheckRequest(domain="nope", descriptors=[descriptor(a="b")]))
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Check(pb.CheckRequest(domain="api"))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(raised.value) == ["descriptors"]


async def test_ratelimit_check_repeated_descriptor_keeps_hits_and_outcomes_apart(
    start_ratelimit,
) -> None:
    # The servicer caches parsed descriptors and decision templates: the same descriptor sent
    # with another request-level `hits`, and one rule decided both ways in one call, must not
    # share an entry.
    async with start_ratelimit() as (running, _):
        stub = limiter_stub(running)
        number, other = unique(), unique()

        async def check(hits: int, *numbers: str) -> pb.CheckResponse:
            return await stub.Check(
                pb.CheckRequest(
                    domain="messaging",
                    descriptors=[descriptor(to_number=n) for n in numbers],
                    hits=hits,
                )
            )

        assert (await check(1, number)).decisions[0].remaining == 99
        assert (await check(30, number)).decisions[0].remaining == 69
        assert (await check(1, number)).decisions[0].remaining == 68
        await check(68, number)
        mixed = (await check(1, number, other)).decisions
        assert [d.code for d in mixed] == [pb.CODE_OVER_LIMIT, pb.CODE_OK]
        assert [d.reason for d in mixed] == ["over limit", "within limit"]
        assert [d.remaining for d in mixed] == [0, 99]
        assert [d.limit for d in mixed] == [100, 100]
        assert mixed[0].retry_after.ToTimedelta().total_seconds() > 0
        assert not mixed[1].HasField("retry_after")
        assert [d.period.ToTimedelta().total_seconds() for d in mixed] == [86400, 86400]


async def test_ratelimit_check_known_descriptors_still_validated(start_ratelimit) -> None:
    # Descriptors whose plan is cached skip the per-entry validation: the list's bounds and any
    # new, malformed descriptor next to them must still be rejected.
    async with start_ratelimit() as (running, _):
        stub = limiter_stub(running)
        number = unique()
        known = descriptor(to_number=number)
        ok = await stub.Check(pb.CheckRequest(domain="messaging", descriptors=[known]))
        assert ok.overall_code == pb.CODE_OK
        bad_requests = [
            pb.CheckRequest(domain="messaging", descriptors=[known] * 101),
            pb.CheckRequest(domain="messaging", descriptors=[known, descriptor(**{"": "x"})]),
        ]
        fields = []
        for request in bad_requests:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.Check(request)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            fields.append(field_violations(raised.value))
        assert fields == [["descriptors"], ["descriptors[1].entries[0].key"]]
        peek = await stub.Peek(pb.PeekRequest(domain="messaging", descriptors=[known]))
        assert peek.decisions[0].remaining == 99
