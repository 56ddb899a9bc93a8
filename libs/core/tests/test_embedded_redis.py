import asyncio

import pytest
import redis.asyncio as redis

from tessera.core.embedded import RedisServer
from tessera.testing import ServerFactory


async def test_redis_server_serves_commands(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        await client.set("test:embedded:redis", "written")
        assert await client.get("test:embedded:redis") == b"written"
    finally:
        await client.aclose()
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"


async def test_paused_redis_times_out_and_answers_again_after_resume(
    redis_factory: ServerFactory[RedisServer],
) -> None:
    server = redis_factory()
    client = redis.Redis.from_url(server.url)
    try:
        await client.set("k", "before pause")

        server.pause()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.get("k"), 0.5)

        server.resume()
        assert await asyncio.wait_for(client.get("k"), 5) == b"before pause"
    finally:
        await client.aclose()


@pytest.mark.parametrize(("appendonly", "survives"), [(True, b"durable"), (False, None)])
async def test_killed_redis_keeps_its_data_only_with_appendonly(
    redis_factory: ServerFactory[RedisServer], appendonly: bool, survives: bytes | None
) -> None:
    server = redis_factory(appendonly=appendonly)
    client = redis.Redis.from_url(server.url)
    try:
        await client.set("k", "durable")
    finally:
        await client.aclose()

    server.kill()
    await asyncio.to_thread(server.restart)

    client = redis.Redis.from_url(server.url)
    try:
        assert await client.get("k") == survives
    finally:
        await client.aclose()
