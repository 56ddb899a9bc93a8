from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from tessera.client.lock import LockClient
from tessera.core.embedded import EtcdServer
from tessera.lock import LockSettings, lock_binding
from tessera.lock_backends import EtcdLockBackend
from tessera.testing import RunningService, ServiceStarter


@pytest.fixture
def lock_settings(etcd_server: EtcdServer) -> LockSettings:
    return LockSettings(port=0, metrics_port=None, etcd_endpoints=[etcd_server.endpoint])


@pytest_asyncio.fixture
async def lock_backend(lock_settings: LockSettings) -> AsyncIterator[EtcdLockBackend]:
    backend = EtcdLockBackend(lock_settings)
    yield backend
    await backend.close()


@pytest_asyncio.fixture
async def lock_service(
    lock_settings: LockSettings, lock_backend: EtcdLockBackend, running_service: ServiceStarter
) -> RunningService:
    return await running_service([lock_binding(lock_settings, lock_backend)], lock_settings)


@pytest_asyncio.fixture
async def lock_client(lock_service: RunningService) -> LockClient:
    return LockClient(lock_service.channel)


Until = Callable[[Callable[[], Awaitable[bool]]], Awaitable[None]]


@pytest.fixture
def until() -> Until:
    """Wait (5 s at most) until a condition holds; tests observe the service from outside."""

    async def wait(condition: Callable[[], Awaitable[bool]]) -> None:
        async with asyncio.timeout(5.0):
            while not await condition():  # noqa: ASYNC110 -- polling is the point, see above
                await asyncio.sleep(0.02)

    return wait
