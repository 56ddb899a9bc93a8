import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as redis

from tessera.core.embedded import RedisServer
from tessera.testing import TcpProxy


@pytest_asyncio.fixture
async def proxy(redis_server: RedisServer) -> AsyncIterator[TcpProxy]:
    async with TcpProxy(redis_server.host, redis_server.port) as proxy:
        yield proxy


@pytest_asyncio.fixture
async def client(proxy: TcpProxy) -> AsyncIterator[redis.Redis]:
    client = redis.Redis(host=proxy.listen_host, port=proxy.listen_port)
    yield client
    await client.aclose()


async def _timed_ping(client: redis.Redis) -> float:
    started = time.monotonic()
    assert await asyncio.wait_for(client.ping(), 5)
    return time.monotonic() - started


async def test_proxy_forwards_both_ways(proxy: TcpProxy, client: redis.Redis) -> None:
    await client.set("test:proxy", "through the proxy")

    assert await client.get("test:proxy") == b"through the proxy"
    assert proxy.address == f"127.0.0.1:{proxy.listen_port}"


async def test_delay_holds_each_chunk_until_healed(proxy: TcpProxy, client: redis.Redis) -> None:
    await client.ping()  # connect first, so only the request and reply are timed

    proxy.delay(0.2)
    delayed = await _timed_ping(client)
    await proxy.heal()
    healed = await _timed_ping(client)

    assert delayed >= 0.4  # request and reply each held 0.2 s
    assert healed < 0.2


async def test_blackhole_makes_calls_time_out_until_healed(
    proxy: TcpProxy, client: redis.Redis
) -> None:
    await client.set("k", "v")

    proxy.blackhole()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.get("k"), 0.5)
    fresh = redis.Redis(host=proxy.listen_host, port=proxy.listen_port)
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(fresh.ping(), 0.5)

        await proxy.heal()
        assert await asyncio.wait_for(fresh.get("k"), 5) == b"v"
        assert await asyncio.wait_for(client.get("k"), 5) == b"v"
    finally:
        await fresh.aclose()


async def test_drop_resets_connections_and_refuses_new_ones_until_healed(proxy: TcpProxy) -> None:
    reader, writer = await asyncio.open_connection(proxy.listen_host, proxy.listen_port)
    writer.write(b"PING\r\n")
    assert await reader.readline() == b"+PONG\r\n"

    await proxy.drop()

    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(proxy.listen_host, proxy.listen_port)

    await proxy.heal()
    reader, writer = await asyncio.open_connection(proxy.listen_host, proxy.listen_port)
    try:
        writer.write(b"PING\r\n")
        assert await reader.readline() == b"+PONG\r\n"
    finally:
        writer.close()
        await writer.wait_closed()


async def test_proxy_to_a_server_that_is_down_closes_the_client(redis_server: RedisServer) -> None:
    async with TcpProxy(redis_server.host, 1) as proxy:
        reader, writer = await asyncio.open_connection(proxy.listen_host, proxy.listen_port)
        try:
            assert await asyncio.wait_for(reader.read(), 5) == b""
        finally:
            writer.close()


def test_listen_port_needs_a_started_proxy() -> None:
    with pytest.raises(RuntimeError, match="not been started"):
        _ = TcpProxy("127.0.0.1", 1).listen_port
