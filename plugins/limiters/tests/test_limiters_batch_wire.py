"""The batch path's own wire: hand-packed EVALSHA, flattened replies, retries and reconnects."""

import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from tessera.core import BackendError
from tessera.core.embedded import RedisServer
from tessera.core.plugins import LimitDecision, Rate
from tessera.core.redis import _packed, connect_redis
from tessera.limiters import Evaluation, FixedWindow, LimitEvaluator


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = connect_redis(redis_server.url)
    yield client
    await client.aclose()


# Replies of every shape a Lua script can give, chosen by the key's only argument.
SHAPES = {
    "empty": "return {}",
    "integers": "return {1, -2, 3.7, 2^52}",
    "mixed": "return {7, 'text', false, 9}",
    "nested": "return {1, {2, {3}}, 'x'}",
    "stops_at_nil": "return {1, nil, 3}",
    "error": "return {err = 'boom'}",
    "status": "return {ok = 'fine'}",
    "number": "return 42",
    "text": "return 'hello'",
    "nothing": "return nil",
}


class ShapeEcho:
    """A test limiter whose decision carries the raw reply of its script (in `lease`)."""

    def script(self) -> str:
        branches = "".join(
            f"if ARGV[1] == '{name}' then {body} end\n" for name, body in SHAPES.items()
        )
        return branches + "return {0}"

    def arguments(self, rate: Rate, cost: int) -> Sequence[int | float | str]:
        return (self.shape,)

    def decision(self, rate: Rate, cost: int, reply: Any) -> LimitDecision:
        return LimitDecision(True, 0, 0, 0.0, 0.0, lease=repr(reply))

    def __init__(self, shape: str) -> None:
        self.shape = shape


async def test_limiters_batch_replies_are_each_scripts_own_reply(redis_client: Redis) -> None:
    rate = Rate(1, 1.0)
    limiters = {name: ShapeEcho(name) for name in SHAPES}
    alone = {}
    for name, limiter in limiters.items():
        try:
            reply: object = await redis_client.eval(limiter.script(), 1, "k", name)
        except ResponseError as error:  # an error reply; inside a batch, an element
            reply = error
        alone[name] = repr(reply)
    rng = random.Random(5)
    order = rng.choices(list(SHAPES), k=300)
    batch = [
        Evaluation(limiters[name], f"limiters:{{shapes}}:{index}", rate, 1)
        for index, name in enumerate(order)
    ]
    decisions = await LimitEvaluator(redis_client).evaluate(batch)
    assert [decision.lease for decision in decisions] == [alone[name] for name in order]


async def test_limiters_batch_retries_on_a_new_connection(redis_server: RedisServer) -> None:
    client = connect_redis(redis_server.url, retries=2)
    admin = connect_redis(redis_server.url)
    try:
        evaluator = LimitEvaluator(client)
        rate = Rate(limit=100, period_s=3600)
        batch = [
            Evaluation(FixedWindow(), f"limiters:{{retry}}:{index}", rate, 1) for index in range(3)
        ]
        assert [d.remaining for d in await evaluator.evaluate(batch)] == [99] * 3
        await admin.client_kill_filter(_type="normal", skipme=True)  # the evaluator's connection
        assert [d.remaining for d in await evaluator.evaluate(batch)] == [98] * 3
    finally:
        await client.aclose()
        await admin.aclose()


@pytest.mark.parametrize("coalesce", [False, True], ids=["pooled", "kept-connection"])
async def test_limiters_failed_batch_leaves_no_unread_reply(
    redis_server: RedisServer, coalesce: bool
) -> None:
    client = connect_redis(redis_server.url, timeout_s=0.2, retries=0)
    admin = connect_redis(redis_server.url)
    try:
        # Coalescing keeps one connection for its exchanges; without, each takes one of the pool.
        evaluator = LimitEvaluator(client, coalesce=coalesce)
        rate = Rate(limit=100, period_s=3600)
        keys = [f"limiters:{{unread-{coalesce}}}:{index}" for index in range(2)]
        batch = [Evaluation(FixedWindow(), key, rate, 1) for key in keys]
        await evaluator.evaluate(batch)
        # Redis sleeps past the client's timeout: the batch fails, its reply arrives later
        await admin.execute_command("CLIENT", "PAUSE", "400", "WRITE")
        with pytest.raises(BackendError) as failed:
            await evaluator.evaluate(batch)
        assert failed.value.retryable
        await admin.execute_command("CLIENT", "UNPAUSE")
        # the late reply of the failed batch is never read as this one's
        other = [Evaluation(FixedWindow(), key + ":other", rate, 1) for key in keys]
        assert [d.remaining for d in await evaluator.evaluate(other)] == [99, 99]
        assert [int(count) for count in await admin.mget(keys)] in ([1, 1], [2, 2])
    finally:
        await client.aclose()
        await admin.aclose()


def test_limiters_fixed_window_decisions_have_every_field() -> None:
    # built from a plain tuple for speed: must stay a whole LimitDecision
    rate = Rate(limit=10, period_s=1.0)
    admitted = FixedWindow().decision(rate, 1, [3, 500_000])
    assert admitted == LimitDecision(True, 10, 7, 0.0, 0.5)
    assert len(admitted) == len(LimitDecision._fields)
    assert (admitted.delay_s, admitted.lease) == (0.0, "")
    denied = FixedWindow().decision(rate, 2, [11, -5])
    assert denied == LimitDecision(False, 10, 0, 0.0, 0.0)


async def test_limiters_batch_exchange_has_a_redis_client_span(
    redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what redis-py's instrumentation gave the pipeline this exchange replaces
    rate = Rate(limit=10, period_s=3600)
    batch = [Evaluation(FixedWindow(), f"limiters:{{span}}:{index}", rate, 1) for index in range(3)]
    evaluator = LimitEvaluator(redis_client)
    await evaluator.evaluate(batch)  # loads the script when no earlier test did (NOSCRIPT resends)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(_packed, "_tracer", provider.get_tracer("test"))
    await evaluator.evaluate(batch)
    [span] = exporter.get_finished_spans()
    assert (span.name, span.kind) == ("EVALSHA", SpanKind.CLIENT)
    assert span.attributes is not None
    assert dict(span.attributes) == {"db.system": "redis", "db.redis.pipeline_length": 1}
