"""Check and Peek on wire bytes: the request reader and the response writer against protobuf."""

import math
import random
import uuid

import grpc
import pytest
from google.protobuf.message import DecodeError

from tessera.core import ValidationError
from tessera.core.plugins import LimitDecision
from tessera.proto.ratelimit.v1 import ratelimit_pb2 as pb
from tessera.ratelimit import BreakerStatus, DescriptorRequest, RateLimitRule, Verdict
from tessera.ratelimit._adaptive import AdaptiveState
from tessera.ratelimit._check_request import split_check_request
from tessera.ratelimit._decision_message import decision_message
from tessera.ratelimit._decision_wire import DecisionWriter, duration, varint

RULES = [
    None,
    RateLimitRule(0, "", 0.0, unlimited=True),
    RateLimitRule(10, "second", 1.0, name="per-second"),
    RateLimitRule(5, "day", 86_400.0, algorithm="token_bucket", burst=7),
    RateLimitRule(2**63, "month", 2_592_000.0, algorithm="fixed_window", align="calendar"),
    RateLimitRule(3, "minute", 60.0, algorithm="concurrency"),
]
SECONDS = [0.0, -1.0, 1e-12, 1e-9, 0.25, 0.999_999_999_6, 1.0, 59.5, 86_399.999_999, 3.2e9]
SECONDS += [math.inf, math.nan]
REASONS = ["within limit", "over limit", "no rule", "shadow mode (over limit)", "allow list"]


def random_seconds(rng: random.Random) -> float:
    return rng.choice([*SECONDS, rng.uniform(0, 2), rng.uniform(0, 1e7)])


def random_verdict(rng: random.Random) -> Verdict:
    state = None
    if rng.random() < 0.8:
        state = LimitDecision(
            rng.random() < 0.7,
            rng.choice([0, 10, 2**40]),
            rng.choice([0, 1, 127, 128, 16_383, 16_384, 2**28 - 1, 2**28, 2**42, 2**64 - 1]),
            random_seconds(rng),
            random_seconds(rng),
            rng.choice([0.0, 0.0, random_seconds(rng)]),
            rng.choice(["", "", "lease-1", "état-∞" * rng.randint(1, 40)]),
        )
    breaker = adaptive = None
    if rng.random() < 0.1:
        breaker = BreakerStatus(
            rng.random() < 0.5, "half_open", 3, 1, random_seconds(rng), "error_ratio"
        )
    if rng.random() < 0.1:
        adaptive = AdaptiveState(rng.randint(1, 500), 0.02, 0.01, 0.1, 42, "aimd")
    return Verdict(
        rng.random() < 0.3,
        rng.choice(REASONS),
        rng.choice(RULES),
        rng.choice(["", "per-second", "api.tenant", "ünïcode"]),
        state,
        rng.random() < 0.2,
        None,
        breaker,
        adaptive,
    )


def test_ratelimit_written_responses_parse_to_the_message_path() -> None:
    rng = random.Random(20261125)
    writer = DecisionWriter()
    for _ in range(400):
        verdicts = [random_verdict(rng) for _ in range(rng.randint(0, 40))]
        over = any(verdict.over_limit for verdict in verdicts)
        expected = pb.CheckResponse(
            overall_code=pb.CODE_OVER_LIMIT if over else pb.CODE_OK,
            decisions=[decision_message(verdict) for verdict in verdicts],
        )
        assert pb.CheckResponse.FromString(writer.check_response(verdicts)) == expected


def test_ratelimit_varints_and_durations_are_protobufs() -> None:
    rng = random.Random(7)
    values = [0, 1, 127, 128, 16_383, 16_384, 2**28 - 1, 2**28, 2**42 - 1, 2**42, 2**64 - 1]
    values += [rng.randrange(2**64) for _ in range(2_000)]
    for value in values:
        assert pb.Decision.FromString(b"\x38" + varint(value)).remaining == value
        if value:  # proto3 writes no zero
            assert b"\x38" + varint(value) == pb.Decision(remaining=value).SerializeToString()
    for seconds in [*SECONDS, *(rng.uniform(0, 1e6) for _ in range(2_000))]:
        message = pb.Decision()
        message.reset_after.SetInParent()
        if 0 < seconds < math.inf:
            whole, nanos = divmod(round(seconds * 1e9), 1_000_000_000)
            message.reset_after.seconds, message.reset_after.nanos = whole, nanos
        assert pb.Decision.FromString(b"\x4a" + duration(seconds)) == message


def random_request(rng: random.Random) -> pb.CheckRequest:
    return pb.CheckRequest(
        domain=rng.choice(["", "api", "dömäin-" + "x" * rng.randint(0, 300)]),
        descriptors=[
            pb.Descriptor(
                entries=[
                    pb.Entry(key=f"k{i}", value=uuid.UUID(int=rng.getrandbits(128)).hex * j)
                    for i in range(rng.randint(0, 4))
                    for j in [rng.randint(0, 9)]
                ],
                hits=rng.choice([0, 1, 300, 2**32 - 1]),
            )
            for _ in range(rng.randint(0, 30))
        ],
        hits=rng.choice([0, 1, 5, 2**32 - 1]),
    )


# Fields protobuf skips: 15 varint, 9 fixed32, 10 fixed64, 11 length-delimited (200 bytes), and
# field 2 (descriptors) with the varint wire type, which makes it an unknown field too.
UNKNOWN = b"\x78\x96\x01" + b"\x4d" + b"\x00" * 4 + b"\x51" + b"\x00" * 8
UNKNOWN += b"\x5a\xc8\x01" + b"z" * 200 + b"\x10\x05"


def test_ratelimit_check_requests_split_like_protobuf_parses_them() -> None:
    rng = random.Random(11)
    for _ in range(300):
        parts = [random_request(rng).SerializeToString() for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.5:
            parts.insert(rng.randrange(len(parts) + 1), UNKNOWN)
        if rng.random() < 0.2:  # an empty group: read by protobuf's parser, skipped all the same
            parts.insert(rng.randrange(len(parts) + 1), b"\x0b\x0c")
        data = b"".join(parts)  # concatenated messages parse as their merge
        message = pb.CheckRequest.FromString(data)
        domain, descriptors, hits = split_check_request(data)
        assert (domain, hits) == (message.domain, message.hits)
        assert [pb.Descriptor.FromString(item) for item in descriptors] == list(message.descriptors)


@pytest.mark.parametrize(
    "data",
    [
        pb.CheckRequest(domain="api").SerializeToString()[:-1],  # truncated
        b"\x0a\x02\xff\xfe",  # a domain that is not UTF-8
        b"\x12\x80",  # a length cut short
        b"\x02\x00",  # field number 0
        b"\x18" + b"\xff" * 11,  # a varint of eleven bytes
    ],
)
def test_ratelimit_malformed_check_requests_are_invalid_arguments(data: bytes) -> None:
    with pytest.raises(DecodeError):
        pb.CheckRequest.FromString(data)
    with pytest.raises(ValidationError) as refused:
        split_check_request(data)
    assert [v.field for v in refused.value.violations] == ["request"]


async def test_ratelimit_check_served_from_wire_bytes_keeps_protobuf_semantics(
    start_ratelimit,
) -> None:
    async with start_ratelimit() as (running, _):
        check = running.channel.unary_unary(
            "/tessera.ratelimit.v1.RateLimiter/Check",
            response_deserializer=pb.CheckResponse.FromString,
        )
        peek = running.channel.unary_unary(
            "/tessera.ratelimit.v1.RateLimiter/Peek",
            response_deserializer=pb.CheckResponse.FromString,
        )
        path = f"/api/{uuid.uuid4().hex}"  # messaging: 3 an hour
        first = pb.CheckRequest(
            domain="messaging",
            descriptors=[pb.Descriptor(entries=[pb.Entry(key="path", value=path)])],
        )
        # unknown fields, and the request split in two messages: protobuf merges them
        head = pb.CheckRequest(domain="messaging").SerializeToString()
        tail = pb.CheckRequest(descriptors=first.descriptors, hits=2).SerializeToString()
        response = await check(head + UNKNOWN + tail)
        assert [(d.code, d.remaining) for d in response.decisions] == [(pb.CODE_OK, 1)]
        peeked = await peek(head + UNKNOWN + tail)  # PeekRequest has no hits: field 3 unknown
        assert [(d.code, d.remaining) for d in peeked.decisions] == [(pb.CODE_OK, 1)]
        response = await check(first.SerializeToString())
        assert response.overall_code == pb.CODE_OK
        assert response.decisions[0].remaining == 0
        response = await check(first.SerializeToString())
        assert response.overall_code == pb.CODE_OVER_LIMIT
        assert response.decisions[0].retry_after.ToTimedelta().total_seconds() > 0
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await check(b"\x12\x80")
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        response = await check(first.SerializeToString())  # the server goes on serving
        assert response.overall_code == pb.CODE_OVER_LIMIT


async def test_ratelimit_evaluated_verdicts_have_every_field(start_ratelimit) -> None:
    # the decider builds them from plain tuples for speed: they must stay whole Verdicts
    async with start_ratelimit() as (_, service):
        path = f"/api/{uuid.uuid4().hex}"
        [verdict] = await service.decider.decide(
            "messaging", [DescriptorRequest((("path", path),))]
        )
        assert len(verdict) == len(Verdict._fields)
        assert verdict.reason == "within limit"
        assert verdict.label  # the rule's configuration path (it has no name)
        assert (verdict.breaker, verdict.adaptive) == (None, None)
        assert verdict.decision is not None
        assert verdict.decision.remaining == 2
