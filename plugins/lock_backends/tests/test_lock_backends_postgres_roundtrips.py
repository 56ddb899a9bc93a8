from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import pytest
import pytest_asyncio

from tessera.core.embedded import PostgresServer
from tessera.core.plugins import LockMode, ReleaseOutcome
from tessera.lock_backends import PostgresLockBackend, PostgresSettings


class _Statements:
    """Every statement the backend's pooled connections send, in order (asyncpg query loggers)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def record(self, query: Any) -> None:
        self.sent.append(query.query)

    async def listen(self, conn: Any) -> None:
        conn.add_query_logger(self.record)


@pytest_asyncio.fixture
async def counted(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[PostgresLockBackend, _Statements]]:
    statements = _Statements()
    create_pool = asyncpg.create_pool

    def create_logged_pool(*args: Any, **kwargs: Any) -> Any:
        return create_pool(*args, init=statements.listen, **kwargs)

    monkeypatch.setattr(asyncpg, "create_pool", create_logged_pool)
    backend = PostgresLockBackend(PostgresSettings(postgres_dsn=postgres_server.dsn))
    yield backend, statements
    await backend.close()


async def test_postgres_uncontended_acquire_and_release_are_one_statement_each(
    counted: tuple[PostgresLockBackend, _Statements],
) -> None:
    backend, statements = counted
    session = await backend.open_session(10)
    name = f"roundtrips/{uuid.uuid4().hex}"
    for mode in (LockMode.EXCLUSIVE, LockMode.SHARED):
        statements.sent.clear()
        grant = await backend.acquire(name, session.id, mode, wait_s=0)
        assert grant is not None
        assert len(statements.sent) == 1, statements.sent
        statements.sent.clear()
        assert await backend.release(name, session.id, grant.token) is ReleaseOutcome.RELEASED
        assert len(statements.sent) == 1, statements.sent
    assert (await backend.describe(name)).holders == ()
    await backend.close_session(session.id)


async def test_postgres_try_on_a_held_lock_queues_nothing(
    counted: tuple[PostgresLockBackend, _Statements],
) -> None:
    backend, statements = counted
    holder, other = await backend.open_session(10), await backend.open_session(10)
    name = f"roundtrips/{uuid.uuid4().hex}"
    grant = await backend.acquire(name, holder.id, LockMode.EXCLUSIVE, wait_s=0)
    assert grant is not None
    statements.sent.clear()
    assert await backend.acquire(name, other.id, LockMode.EXCLUSIVE, wait_s=0) is None
    assert not any("INSERT INTO tessera_lock.entries" in sent for sent in statements.sent)
    state = await backend.describe(name)
    assert [e.session_id for e in state.holders] == [holder.id]
    assert state.waiters == ()
    # The general way still queues a waiter, which NOTIFY wakes when the holder releases.
    waiting = asyncio.create_task(backend.acquire(name, other.id, LockMode.SHARED, wait_s=5))
    states = backend.observe(name)
    async for state in states:
        if state.waiters:
            break
    await states.aclose()
    assert await backend.release(name, holder.id, grant.token) is ReleaseOutcome.RELEASED
    second = await waiting
    assert second is not None
    assert second.token > grant.token
    assert await backend.release(name, holder.id, grant.token) is ReleaseOutcome.ALREADY_GONE
    assert await backend.release(name, other.id, second.token) is ReleaseOutcome.RELEASED
    await backend.close_session(holder.id)
    await backend.close_session(other.id)
