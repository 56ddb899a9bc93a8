from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from tessera.core import TesseraSettings
from tessera.core.embedded import EtcdServer
from tessera.core.plugins import LOCK_BACKENDS, LockBackend, LockMode, Safety, load_plugins
from tessera.lock_backends import EtcdLockBackend
from tessera.testing import ServerFactory
from tessera.testing.conformance.lock_backends import LOCK_BACKEND_CHECKS


@pytest_asyncio.fixture
async def etcd_backend(etcd_server: EtcdServer) -> AsyncIterator[EtcdLockBackend]:
    backend = EtcdLockBackend(TesseraSettings(etcd_endpoints=[etcd_server.endpoint]))
    yield backend
    await backend.close()


@pytest.mark.parametrize("check", LOCK_BACKEND_CHECKS, ids=lambda check: check.__name__)
async def test_etcd_backend_conforms(
    check: Callable[[LockBackend], Awaitable[None]], etcd_backend: EtcdLockBackend
) -> None:
    await check(etcd_backend)


def test_etcd_backend_is_registered_and_linearizable(etcd_server: EtcdServer) -> None:
    plugin = load_plugins(LOCK_BACKENDS).get("etcd")
    backend = plugin.create(TesseraSettings(etcd_endpoints=[etcd_server.endpoint]))
    assert isinstance(backend, EtcdLockBackend)
    assert backend.safety is Safety.LINEARIZABLE


async def test_etcd_tokens_keep_increasing_across_an_etcd_restart(
    etcd_factory: ServerFactory[EtcdServer],
) -> None:
    server = etcd_factory()
    backend = EtcdLockBackend(TesseraSettings(etcd_endpoints=[server.endpoint]))
    try:
        session = await backend.open_session(30)
        before = await backend.acquire("restart", session.id, LockMode.EXCLUSIVE, wait_s=0)
        assert before is not None
        await backend.release("restart", session.id, before.token)
        await asyncio.to_thread(server.restart)
        # A request id lets the backend retry through the reconnection.
        after = await backend.acquire(
            "restart", session.id, LockMode.EXCLUSIVE, wait_s=5, request_id="after-restart"
        )
        assert after is not None
        assert after.token > before.token
    finally:
        await backend.close()
