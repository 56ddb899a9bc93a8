import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.exceptions
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.connection import Connection

from tessera.core.embedded import RedisServer
from tessera.core.redis import ScriptPipe, connect_redis, evalsha_command
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


def _counting(pipe: ScriptPipe) -> list[int]:
    # how many commands each exchange with Redis carried, in order
    sizes: list[int] = []
    exchange = pipe._exchange.exchange

    async def counted(commands: bytes, count: int) -> list[object]:
        sizes.append(count)
        return await exchange(commands, count)

    pipe._exchange.exchange = counted  # type: ignore[method-assign]
    return sizes


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


async def _pipe_and_add(client: Redis) -> tuple[ScriptPipe, AsyncScript]:
    await client.script_load(ADD)
    return ScriptPipe(client), client.register_script(ADD)


async def test_script_pipe_sends_calls_queued_behind_an_exchange_in_one(client: Redis) -> None:
    pipe, add = await _pipe_and_add(client)
    sizes = _counting(pipe)
    key = f"test:pipe:{uuid.uuid4().hex}"

    replies = await asyncio.gather(*(pipe.run(add, [key], [1, f"call-{i}"]) for i in range(20)))

    assert [tag for _, tag in replies] == [f"call-{i}".encode() for i in range(20)]
    assert sorted(total for total, _ in replies) == list(range(1, 21))
    assert sizes == [1, 19]  # the first goes out alone at once, the others queue behind it
    await pipe.aclose()


async def test_script_pipe_queues_calls_made_while_an_exchange_is_in_flight(
    client: Redis,
) -> None:
    pipe, add = await _pipe_and_add(client)
    sizes = _counting(pipe)
    key = f"test:pipe:{uuid.uuid4().hex}"

    first = asyncio.ensure_future(pipe.run(add, [key], [1, "first"]))
    await asyncio.sleep(0)  # the first exchange is out
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(pipe.run(add, [key], [1, f"later-{i}"])) for i in range(5)]
    await asyncio.gather(first, *later)

    assert sizes == [1, 5]
    assert await client.get(key) == b"6"
    await pipe.aclose()


async def test_script_pipe_reloads_flushed_scripts_and_runs_each_call_once(
    client: Redis,
) -> None:
    pipe = ScriptPipe(client)
    add = client.register_script(ADD)
    key = f"test:pipe:{uuid.uuid4().hex}"
    await client.script_flush()

    replies = await asyncio.gather(*(pipe.run(add, [key], [1, "x"]) for _ in range(3)))

    assert sorted(total for total, _ in replies) == [1, 2, 3]
    assert await client.get(key) == b"3"  # the calls refused with NOSCRIPT did not run
    await pipe.aclose()


async def test_script_pipe_gives_an_error_reply_to_its_caller_only(client: Redis) -> None:
    pipe = ScriptPipe(client)
    fail = client.register_script(FAIL)
    await client.script_load(FAIL)

    results = await asyncio.gather(
        pipe.run(fail, ["k"], ["ok"]),
        pipe.run(fail, ["k"], ["fail"]),
        pipe.run(fail, ["k"], ["ok"]),
        return_exceptions=True,
    )

    assert results[0] == 1
    assert results[2] == 1
    assert isinstance(results[1], redis.exceptions.ResponseError)
    assert "asked to fail" in str(results[1])
    assert await pipe.run(fail, ["k"], ["ok"]) == 1
    await pipe.aclose()


async def test_script_pipe_serves_others_when_a_caller_is_cancelled(client: Redis) -> None:
    pipe, add = await _pipe_and_add(client)
    key = f"test:pipe:{uuid.uuid4().hex}"

    cancelled = asyncio.ensure_future(pipe.run(add, [key], [1, "gone"]))
    kept = asyncio.ensure_future(pipe.run(add, [key], [1, "kept"]))
    await asyncio.sleep(0)
    cancelled.cancel()

    assert (await kept)[1] == b"kept"
    assert cancelled.cancelled()
    assert (await pipe.run(add, [key], [1, "after"]))[1] == b"after"
    await pipe.aclose()


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


async def test_script_pipe_runs_after_redis_restarts(
    own_server: tuple[RedisServer, Redis],
) -> None:
    server, client = own_server
    pipe, add = await _pipe_and_add(client)
    assert (await pipe.run(add, ["hits"], [2, "before"]))[0] == 2

    await asyncio.to_thread(server.restart)

    # the kept connection is dead and the script cache empty: the retry reconnects, the
    # NOSCRIPT reply loads the script
    assert await pipe.run(add, ["hits"], [3, "after"]) == [3, b"after"]
    await pipe.aclose()


async def test_script_pipe_close_cancels_the_queued_calls(
    own_server: tuple[RedisServer, Redis],
) -> None:
    server, client = own_server
    pipe, add = await _pipe_and_add(client)
    server.pause()  # the exchange in flight waits for a reply that does not come
    sending = asyncio.ensure_future(pipe.run(add, ["hits"], [1, "sent"]))
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(pipe.run(add, ["hits"], [1, "queued"]))
    sending.cancel()  # its caller gives up: the queued call goes out from a task
    with contextlib.suppress(asyncio.CancelledError):
        await sending
    await asyncio.sleep(0.05)

    await pipe.aclose()

    with pytest.raises(asyncio.CancelledError):
        await queued


async def test_script_pipe_runs_a_list_of_calls_in_one_exchange(client: Redis) -> None:
    pipe, add = await _pipe_and_add(client)
    fail = client.register_script(FAIL)
    await client.script_load(FAIL)
    sizes = _counting(pipe)
    key = f"test:pipe:{uuid.uuid4().hex}"

    replies = await pipe.run_all([(add, [key], [i, f"call-{i}"]) for i in range(1, 6)])
    with pytest.raises(redis.exceptions.ResponseError, match="asked to fail"):
        await pipe.run_all([(add, [key], [10, "ran"]), (fail, ["k"], ["fail"])])

    assert [total for total, _ in replies] == [1, 3, 6, 10, 15]
    assert await client.get(key) == b"25"  # the call beside the failure ran
    assert sizes == [5, 2]
    await pipe.aclose()
