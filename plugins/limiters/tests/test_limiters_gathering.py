"""How concurrent callers share a round trip: gathering a batch, and the kept connection."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from tessera.core.embedded import RedisServer
from tessera.core.plugins import Rate
from tessera.core.redis import connect_redis
from tessera.limiters import Evaluation, FixedWindow, LimitEvaluator, _evaluate

_RATE = Rate(limit=1000, period_s=3600)


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = connect_redis(redis_server.url)
    yield client
    await client.aclose()


def _count_exchanges(evaluator: LimitEvaluator, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    # how many keys every exchange with Redis carried, in order
    sizes: list[int] = []
    for exchange in (evaluator._runner._kept, evaluator._runner._pooled):
        send = exchange.exchange

        async def counted(commands: bytes, count: int, send: Any = send) -> list[object]:
            sizes.append(commands.count(b"limiters:{"))
            return await send(commands, count)

        monkeypatch.setattr(exchange, "exchange", counted)
    return sizes


async def _call(evaluator: LimitEvaluator, key: str, turns: int) -> int:
    for _ in range(turns):  # arrive on a later turn of the event loop
        await asyncio.sleep(0)
    [decision] = await evaluator.evaluate([Evaluation(FixedWindow(), key, _RATE, 1)])
    return decision.remaining


async def test_limiters_callers_arriving_turn_after_turn_share_one_round_trip(
    redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluator = LimitEvaluator(redis_client)
    sizes = _count_exchanges(evaluator, monkeypatch)
    keys = [f"limiters:{{gather}}:{index}" for index in range(8)]
    # eight callers at once: one batch, which tells the evaluator to expect eight
    assert await asyncio.gather(*(_call(evaluator, key, 0) for key in keys)) == [999] * 8
    sizes.clear()  # the first exchange may have met NOSCRIPT and been sent twice
    # eight callers one loop turn apart: gathered into one batch, not sent one by one
    late = await asyncio.gather(*(_call(evaluator, key, turns) for turns, key in enumerate(keys)))
    assert late == [998] * 8
    assert sizes == [8]
    assert [int(count) for count in await redis_client.mget(keys)] == [2] * 8


async def test_limiters_a_sequential_caller_never_waits_to_gather(
    redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluator = LimitEvaluator(redis_client)
    timers = _spy_timers(monkeypatch)
    remaining = [await _call(evaluator, "limiters:{sequential}", 0) for _ in range(20)]
    assert remaining == list(range(999, 979, -1))
    # each batch held one caller: none waited for another (Redis's socket timeouts are timers too)
    assert _evaluate._GATHER_S not in timers


async def test_limiters_gathering_ends_when_expected_callers_do_not_come(
    redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluator = LimitEvaluator(redis_client)
    sizes = _count_exchanges(evaluator, monkeypatch)
    keys = [f"limiters:{{alone}}:{index}" for index in range(4)]
    await asyncio.gather(*(_call(evaluator, key, 0) for key in keys))
    sizes.clear()
    # four expected, one comes: it still gets its decision once the window is over
    assert await asyncio.wait_for(_call(evaluator, keys[0], 0), 2.0) == 998
    assert sizes == [1]


async def test_limiters_after_a_pause_a_lone_caller_does_not_wait_for_the_last_burst(
    redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluator = LimitEvaluator(redis_client)
    keys = [f"limiters:{{pause}}:{index}" for index in range(6)]
    await asyncio.gather(*(_call(evaluator, key, 0) for key in keys))
    await asyncio.sleep(_evaluate._IDLE_S * 3)
    timers = _spy_timers(monkeypatch)
    assert await _call(evaluator, keys[0], 0) == 998
    assert _evaluate._GATHER_S not in timers


async def test_limiters_a_lone_key_reloads_its_script_after_a_flush(
    redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluator = LimitEvaluator(redis_client)
    sizes = _count_exchanges(evaluator, monkeypatch)
    key = "limiters:{lone}"
    assert await _call(evaluator, key, 0) == 999
    await redis_client.script_flush()
    sizes.clear()
    # NOSCRIPT: the script did not run; it is loaded and the key counted once
    assert await _call(evaluator, key, 0) == 998
    assert sizes == [1, 1]
    assert int(await redis_client.get(key)) == 2


def _spy_timers(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the delay of every timer the running loop sets from now on."""
    loop = asyncio.get_running_loop()
    timers: list[float] = []
    call_later = loop.call_later

    def spied(delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        timers.append(delay)
        return call_later(delay, callback, *args)

    monkeypatch.setattr(loop, "call_later", spied)
    return timers
