from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from tessera.core import TesseraSettings
from tessera.core.embedded import RedisServer
from tessera.core.plugins import LOCK_BACKENDS, LockBackend, Safety, load_plugins
from tessera.lock_backends import RedisLockBackend
from tessera.testing.conformance.lock_backends import LOCK_BACKEND_CHECKS


@pytest_asyncio.fixture
async def redis_backend(redis_server: RedisServer) -> AsyncIterator[RedisLockBackend]:
    backend = RedisLockBackend(TesseraSettings(redis_url=redis_server.url))
    yield backend
    await backend.close()


@pytest.mark.parametrize("check", LOCK_BACKEND_CHECKS, ids=lambda check: check.__name__)
async def test_redis_backend_conforms(
    check: Callable[[LockBackend], Awaitable[None]], redis_backend: RedisLockBackend
) -> None:
    await check(redis_backend)


async def test_redis_backend_is_registered_and_says_efficiency_only(
    redis_server: RedisServer,
) -> None:
    plugin = load_plugins(LOCK_BACKENDS).get("redis")
    backend = plugin.create(TesseraSettings(redis_url=redis_server.url))
    assert isinstance(backend, RedisLockBackend)
    assert backend.safety is Safety.EFFICIENCY_ONLY
    await backend.close()
