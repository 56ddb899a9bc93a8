import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.exceptions
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.connection import Connection

from tessera.core.embedded import RedisSentinelGroup, RedisServer
from tessera.core.redis import ScriptRunner, connect_redis, evalsha_command
from tessera.testing import ServerFactory

# Adds ARGV[1] to the counter KEYS[1] and answers {the new value, ARGV[2] as sent}.
ADD = "return {redis.call('INCRBY', KEYS[1], ARGV[1]), ARGV[2]}"
# Fails with an error reply when ARGV[1] is 'fail'.
FAIL = "if ARGV[1] == 'fail' then return redis.error_reply('asked to fail') end return 1"


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = connect_redis(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def own_server(
    redis_factory: ServerFactory[RedisServer],
) -> AsyncIterator[tuple[RedisServer, Redis]]:
    # a server of the test's own, to restart or pause, and a client of it
    server = await asyncio.to_thread(redis_factory)
    client = connect_redis(server.url)
    yield server, client
    server.resume()
    await client.aclose()


def _exchanges(runner: ScriptRunner) -> list[tuple[str, int]]:
    # which connection each exchange with Redis used ("kept" or "pooled") and how many commands
    # it carried, in order
    seen: list[tuple[str, int]] = []
    for kind in ("kept", "pooled"):
        exchange = getattr(runner, f"_{kind}")
        send = exchange.exchange

        async def counted(commands: bytes, count: int, kind: str = kind, send: Any = send) -> Any:
            seen.append((kind, count))
            return await send(commands, count)

        exchange.exchange = counted
    return seen


def test_evalsha_command_is_packed_as_redis_py_packs_it() -> None:
    rng = random.Random(3)
    packer = Connection()  # type: ignore[no-untyped-call]  # redis-py: untyped
    alphabet = "abc{}:=&%é∞\x00\r\n"
    for size in [0, 1, 2, 9, 10, 99, 100, 1000]:
        keys = ["".join(rng.choices(alphabet, k=rng.randint(0, 40))) for _ in range(size)]
        text = "\x1e".join("".join(rng.choices(alphabet, k=5)) for _ in range(size))
        data = rng.randbytes(size)
        sha = f"{rng.getrandbits(160):040x}"
        for arguments in [(text,), (text, data, "", "3600.5"), tuple(map(str, range(size % 20)))]:
            expected = b"".join(packer.pack_command("EVALSHA", sha, len(keys), *keys, *arguments))  # type: ignore[no-untyped-call]  # redis-py: untyped
            assert evalsha_command(sha, keys, *arguments) == expected


async def _runner_and_add(client: Redis) -> tuple[ScriptRunner, AsyncScript]:
    await client.script_load(ADD)
    return ScriptRunner(client), client.register_script(ADD)


async def test_script_runner_uses_its_kept_connection_when_it_is_free(client: Redis) -> None:
    runner, add = await _runner_and_add(client)
    exchanges = _exchanges(runner)
    key = f"test:runner:{uuid.uuid4().hex}"

    for index in range(3):
        assert await runner.run(add, [key], [1, f"call-{index}"]) == [index + 1, b"call-%d" % index]

    assert exchanges == [("kept", 1)] * 3


async def test_script_runner_never_waits_behind_a_call_in_flight(
    own_server: tuple[RedisServer, Redis],
) -> None:
    server, client = own_server
    runner, add = await _runner_and_add(client)
    exchanges = _exchanges(runner)
    server.pause()  # the first call's reply does not come
    first = asyncio.ensure_future(runner.run(add, ["hits"], [1, "first"]))
    await asyncio.sleep(0.05)
    second = asyncio.ensure_future(runner.run(add, ["hits"], [1, "second"]))
    await asyncio.sleep(0.05)

    assert exchanges == [("kept", 1), ("pooled", 1)]  # sent on its own connection
    server.resume()
    assert sorted([await first, await second]) == [[1, b"first"], [2, b"second"]]
    assert await runner.run(add, ["hits"], [1, "third"]) == [3, b"third"]
    assert exchanges[-1] == ("kept", 1)


async def test_script_runner_runs_a_list_of_calls_in_one_exchange(client: Redis) -> None:
    runner, add = await _runner_and_add(client)
    fail = client.register_script(FAIL)
    await client.script_load(FAIL)
    exchanges = _exchanges(runner)
    key = f"test:runner:{uuid.uuid4().hex}"

    replies = await runner.run_all([(add, [key], [i, f"call-{i}"]) for i in range(1, 6)])
    with pytest.raises(redis.exceptions.ResponseError, match="asked to fail"):
        await runner.run_all([(add, [key], [10, "ran"]), (fail, ["k"], ["fail"])])

    assert [total for total, _ in replies] == [1, 3, 6, 10, 15]
    assert await client.get(key) == b"25"  # the call beside the failure ran
    assert exchanges == [("kept", 5), ("kept", 2)]
    assert await runner.run(fail, ["k"], ["ok"]) == 1


async def test_script_runner_reloads_flushed_scripts_and_runs_each_call_once(
    client: Redis,
) -> None:
    runner = ScriptRunner(client)
    add = client.register_script(ADD)
    key = f"test:runner:{uuid.uuid4().hex}"
    exchanges = _exchanges(runner)
    await client.script_flush()

    replies = await runner.run_all([(add, [key], [1, "x"]) for _ in range(3)])

    assert [total for total, _ in replies] == [1, 2, 3]
    assert await client.get(key) == b"3"  # the calls refused with NOSCRIPT did not run
    assert exchanges == [("kept", 3), ("kept", 3)]


async def test_script_runner_serves_the_next_call_after_a_cancelled_one(
    own_server: tuple[RedisServer, Redis],
) -> None:
    server, client = own_server
    runner, add = await _runner_and_add(client)
    server.pause()
    cancelled = asyncio.ensure_future(runner.run(add, ["hits"], [1, "gone"]))
    await asyncio.sleep(0.05)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    server.resume()

    # the kept connection, whose reply was left unread, was dropped: a new one answers
    assert await runner.run(add, ["hits"], [1, "after"]) == [2, b"after"]


async def test_script_runner_times_out_on_a_paused_redis_then_serves_again(
    redis_factory: ServerFactory[RedisServer],
) -> None:
    server = await asyncio.to_thread(redis_factory)
    client = connect_redis(server.url, timeout_s=0.3, retries=1)
    try:
        runner, add = await _runner_and_add(client)
        assert await runner.run(add, ["hits"], [1, "before"]) == [1, b"before"]
        server.pause()
        try:
            began = time.monotonic()
            with pytest.raises(redis.exceptions.TimeoutError):
                await runner.run(add, ["hits"], [1, "paused"])
            # two tries of 0.3 s each and a backoff, not a hang
            assert time.monotonic() - began < 5
        finally:
            server.resume()
        # the timed-out connections were dropped and keep their own timeout for later use
        connection = runner._kept._connection
        assert connection is not None
        assert connection.socket_timeout == 0.3
        assert (await runner.run(add, ["hits"], [1, "after"]))[1] == b"after"
    finally:
        server.resume()
        await client.aclose()


async def test_script_runner_runs_after_redis_restarts(
    own_server: tuple[RedisServer, Redis],
) -> None:
    server, client = own_server
    runner, add = await _runner_and_add(client)
    assert await runner.run(add, ["hits"], [2, "before"]) == [2, b"before"]

    await asyncio.to_thread(server.restart)

    # the kept connection is dead and the script cache empty: the retry reconnects, the
    # NOSCRIPT reply loads the script
    assert await runner.run(add, ["hits"], [3, "after"]) == [3, b"after"]


async def test_script_runner_follows_a_sentinel_failover(
    redis_sentinel: RedisSentinelGroup,
) -> None:
    client = connect_redis(redis_sentinel.url, timeout_s=0.5, retries=1)
    runner, add = await _runner_and_add(client)
    key = f"test:runner:{uuid.uuid4().hex}"
    try:
        assert await runner.run(add, [key], [1, "before"]) == [1, b"before"]
        # WAIT: the replica has the write before the master dies, so the failover loses nothing.
        assert await client.execute_command("WAIT", 1, 2000) == 1

        redis_sentinel.master.kill()

        deadline = time.monotonic() + 20
        while True:
            try:
                # the kept connection went to the old master: it reconnects to the promoted
                # replica, whose script cache is empty (NOSCRIPT: loaded, sent again)
                reply = await runner.run(add, [key], [1, "after"])
                break
            except redis.exceptions.RedisError:
                assert time.monotonic() < deadline, "no failover within 20 s"
                await asyncio.sleep(0.2)
        assert reply == [2, b"after"]
        assert redis_sentinel.current_master() is redis_sentinel.replicas[0]
    finally:
        await client.aclose()
