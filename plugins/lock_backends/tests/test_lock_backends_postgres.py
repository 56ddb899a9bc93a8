from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from tessera.core.embedded import PostgresServer
from tessera.core.plugins import LOCK_BACKENDS, LockBackend, Safety, load_plugins
from tessera.lock_backends import PostgresLockBackend, PostgresSettings
from tessera.testing.conformance.lock_backends import LOCK_BACKEND_CHECKS


@pytest_asyncio.fixture
async def postgres_backend(postgres_server: PostgresServer) -> AsyncIterator[PostgresLockBackend]:
    backend = PostgresLockBackend(PostgresSettings(postgres_dsn=postgres_server.dsn))
    yield backend
    await backend.close()


@pytest.mark.parametrize("check", LOCK_BACKEND_CHECKS, ids=lambda check: check.__name__)
async def test_postgres_backend_conforms(
    check: Callable[[LockBackend], Awaitable[None]], postgres_backend: PostgresLockBackend
) -> None:
    await check(postgres_backend)


async def test_postgres_backend_is_registered_and_says_single_primary(
    postgres_server: PostgresServer,
) -> None:
    plugin = load_plugins(LOCK_BACKENDS).get("postgres")
    backend = plugin.create(PostgresSettings(postgres_dsn=postgres_server.dsn))
    assert isinstance(backend, PostgresLockBackend)
    assert backend.safety is Safety.SINGLE_PRIMARY
    session = await backend.open_session(5)
    assert 4 < await backend.session_ttl(session.id) <= 5
    await backend.close_session(session.id)
    assert await backend.keep_alive(session.id) == 0
    await backend.close()
