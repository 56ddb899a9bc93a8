import asyncio
import uuid

import pytest
import redis.exceptions

from tessera.core import BackendError, TesseraSettings
from tessera.core.embedded import RedisServer, free_port
from tessera.core.redis import connect_redis, redis_errors
from tessera.testing import ServerFactory

# Increments a counter and returns it: stands for the rate limiter's scripts.
INCREMENT = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


async def test_redis_connect_from_settings_reads_and_writes(redis_server: RedisServer) -> None:
    client = connect_redis(TesseraSettings(redis_url=redis_server.url))
    key = f"test:redis:{uuid.uuid4().hex}"
    try:
        assert await client.set(key, "v", ex=60)
        assert await client.get(key) == b"v"
        parser = client.connection_pool.connection_kwargs["parser_class"]
        assert parser.__name__ == "_AsyncHiredisParser"
    finally:
        await client.delete(key)
        await client.aclose()


async def test_redis_client_reconnects_after_a_restart_between_calls(
    redis_factory: ServerFactory[RedisServer],
) -> None:
    server = await asyncio.to_thread(redis_factory)
    client = connect_redis(server.url)
    try:
        increment = client.register_script(INCREMENT)
        assert await increment(keys=["hits"], args=[2]) == 2
        await asyncio.to_thread(server.restart)
        # The pooled connection is dead and the script cache is empty: the retry reconnects and
        # the script object reloads the script on NOSCRIPT.
        assert await increment(keys=["hits"], args=[3]) == 3
        assert await client.ping()
    finally:
        await client.aclose()


async def test_redis_errors_unreachable_server_is_retryable() -> None:
    client = connect_redis(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5, retries=1)
    try:
        with pytest.raises(BackendError) as caught, redis_errors("ping"):
            await client.ping()
    finally:
        await client.aclose()
    assert caught.value.backend == "redis"
    assert caught.value.retryable is True
    assert caught.value.message.startswith("redis ping: ")
    assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)


async def test_redis_errors_rejected_command_is_not_retryable(redis_server: RedisServer) -> None:
    client = connect_redis(redis_server.url)
    key = f"test:redis:{uuid.uuid4().hex}"
    try:
        await client.set(key, "not a number", ex=60)
        with pytest.raises(BackendError) as caught, redis_errors("increment"):
            await client.incr(key)
    finally:
        await client.aclose()
    assert caught.value.retryable is False
    assert isinstance(caught.value.__cause__, redis.exceptions.ResponseError)


def test_redis_public_api_is_pinned() -> None:
    import tessera.core.redis as package

    assert package.__all__ == [
        "CLUSTER_SCHEMES",
        "DEFAULT_RETRIES",
        "DEFAULT_TIMEOUT_S",
        "SENTINEL_SCHEMES",
        "CeleryBroker",
        "PackedExchange",
        "RedisTopology",
        "ScriptCall",
        "ScriptRunner",
        "celery_broker",
        "connect_redis",
        "connect_redis_cluster",
        "evalsha_command",
        "parse_redis_url",
        "redis_errors",
    ]
    assert all(hasattr(package, name) for name in package.__all__)
