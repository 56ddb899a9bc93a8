from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tessera.client.lock import LockClient
from tessera.core.embedded import EtcdServer, free_port
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


LockProcess = Callable[[int], AbstractAsyncContextManager[asyncio.subprocess.Process]]


@pytest.fixture
def lock_process(etcd_server: EtcdServer) -> LockProcess:
    """Run `python -m tessera.lock` on a port, on the session's etcd, for an `async with` block.

    The block starts once the process serves `tessera.lock.v1.Lock` (30 s at most) and gets the
    process; a process still running at the end is killed.
    """

    @asynccontextmanager
    async def run(port: int) -> AsyncIterator[asyncio.subprocess.Process]:
        env = {
            **os.environ,
            "TESSERA_PORT": str(port),
            "TESSERA_METRICS_PORT": str(free_port()),
            "TESSERA_ETCD_ENDPOINTS": etcd_server.endpoint,
            "TESSERA_LOG_FORMAT": "json",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tessera.lock", env=env, stdout=asyncio.subprocess.DEVNULL
        )
        try:
            await _until_serving(f"127.0.0.1:{port}")
            yield process
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    return run


async def _until_serving(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="tessera.lock.v1.Lock")
        async with asyncio.timeout(30):
            while True:
                try:
                    reply = await health.Check(request, wait_for_ready=True)
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.1)
                    continue
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
