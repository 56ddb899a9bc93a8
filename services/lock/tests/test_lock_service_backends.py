from __future__ import annotations

import asyncio
import uuid

import pytest

from tessera.client.lock import LockClient
from tessera.core import PluginError
from tessera.core.embedded import PostgresServer, RedisServer, ZooKeeperServer
from tessera.lock import LockSettings, load_backend, lock_binding
from tessera.lock_backends import PostgresLockBackend, RedisLockBackend, ZooKeeperLockBackend
from tessera.testing import ServiceStarter


def test_lock_unknown_backend_is_a_plugin_error_naming_it() -> None:
    with pytest.raises(PluginError, match="no-such-backend"):
        load_backend(LockSettings(lock_backend="no-such-backend"))


async def test_lock_service_serves_locks_from_the_redis_backend(
    redis_server: RedisServer, running_service: ServiceStarter
) -> None:
    settings = LockSettings(
        port=0, metrics_port=None, lock_backend="redis", redis_url=redis_server.url
    )
    backend = load_backend(settings)
    assert isinstance(backend, RedisLockBackend)
    try:
        service = await running_service([lock_binding(settings, backend)], settings)
        client = LockClient(service.channel)
        name = f"redis/{uuid.uuid4().hex}"
        async with client.lock(name, ttl=5) as first:
            assert [h.token for h in (await client.describe(name)).holders] == [first.token]
        async with client.lock(name, ttl=5) as second:
            assert second.token > first.token
        assert not (await client.describe(name)).holders
    finally:
        await backend.close()


async def test_lock_service_serves_locks_from_the_postgres_backend(
    postgres_server: PostgresServer,
    running_service: ServiceStarter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The PostgreSQL backend reads its DSN from the environment, as a deployed service does.
    monkeypatch.setenv("TESSERA_POSTGRES_DSN", postgres_server.dsn)
    settings = LockSettings(port=0, metrics_port=None, lock_backend="postgres")
    backend = load_backend(settings)
    assert isinstance(backend, PostgresLockBackend)
    try:
        service = await running_service([lock_binding(settings, backend)], settings)
        client = LockClient(service.channel)
        name = f"postgres/{uuid.uuid4().hex}"
        async with client.lock(name, ttl=5) as first:
            assert await client.validate_token(name, first.token)
        async with client.lock(name, ttl=5) as second:
            assert second.token > first.token
    finally:
        await backend.close()


async def test_lock_service_serves_locks_from_the_zookeeper_backend(
    zookeeper_server: ZooKeeperServer,
    running_service: ServiceStarter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The ZooKeeper backend reads its hosts from the environment, as a deployed service does.
    monkeypatch.setenv("TESSERA_ZOOKEEPER_HOSTS", zookeeper_server.hosts)
    settings = LockSettings(port=0, metrics_port=None, lock_backend="zookeeper")
    backend = load_backend(settings)
    assert isinstance(backend, ZooKeeperLockBackend)
    try:
        service = await running_service([lock_binding(settings, backend)], settings)
        client = LockClient(service.channel)
        name = f"zookeeper/{uuid.uuid4().hex}"
        async with client.lock(name, ttl=5) as first:
            assert await client.validate_token(name, first.token)
            session = await client.open_session(5)
            waiting = asyncio.ensure_future(client.acquire(name, session, wait=10))
            async with asyncio.timeout(10):
                # Polls on purpose: observes the queue from outside, as a client would.
                while not (await client.describe(name)).waiters:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            assert not waiting.done()
        second = await waiting
        assert second.token > first.token
        await client.release(second)
        await second.session.close()
        assert not (await client.describe(name)).holders
    finally:
        await backend.close()
