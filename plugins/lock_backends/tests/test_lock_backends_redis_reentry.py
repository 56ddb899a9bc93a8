"""Redis acquisitions cancelled while their script runs: nothing stays behind that nobody holds.

Each test freezes a private server so that the ENQUEUE script is sent but not answered before
the caller is cancelled; the backend then waits for the answer and undoes what the script did.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio

from tessera.core import TesseraSettings
from tessera.core.embedded import RedisServer
from tessera.core.plugins import LockGrant, LockMode, ReleaseOutcome
from tessera.lock_backends import RedisLockBackend
from tessera.testing import ServerFactory, cancel_while_frozen

_TTL_S = 30.0  # far longer than any test: no lease ends here
_LOCK = "reentered"


@pytest_asyncio.fixture
async def server(redis_factory: ServerFactory[RedisServer]) -> RedisServer:
    return redis_factory()


@pytest_asyncio.fixture
async def backend(server: RedisServer) -> AsyncIterator[RedisLockBackend]:
    backend = RedisLockBackend(TesseraSettings(redis_url=server.url))
    yield backend
    await backend.close()


async def test_redis_reentrant_acquisition_cancelled_while_its_script_runs_gives_its_hold_back(
    backend: RedisLockBackend, server: RedisServer
) -> None:
    holder, other = await backend.open_session(_TTL_S), await backend.open_session(_TTL_S)
    grant = await backend.acquire(_LOCK, holder.id, LockMode.EXCLUSIVE, wait_s=0, reentrant=True)
    assert grant is not None
    assert grant.holds == 1
    await cancel_while_frozen(
        server,
        backend.acquire(_LOCK, holder.id, LockMode.EXCLUSIVE, wait_s=10, reentrant=True),
    )
    [entry] = (await backend.describe(_LOCK)).holders
    assert (entry.session_id, entry.holds) == (holder.id, 1)
    # One acquisition went through: one release frees the lock.
    assert await backend.release(_LOCK, holder.id, grant.token) is ReleaseOutcome.RELEASED
    assert (await backend.describe(_LOCK)).holders == ()
    assert await backend.acquire(_LOCK, other.id, LockMode.EXCLUSIVE, wait_s=0) is not None


async def test_redis_retry_of_a_cancelled_reentrant_acquisition_holds_again(
    backend: RedisLockBackend, server: RedisServer
) -> None:
    holder = await backend.open_session(_TTL_S)

    async def acquire(request_id: str) -> LockGrant:
        held = await backend.acquire(
            _LOCK, holder.id, LockMode.EXCLUSIVE, wait_s=10, request_id=request_id, reentrant=True
        )
        assert held is not None
        return held

    first = await acquire("first")
    assert [first.holds, (await acquire("second")).holds] == [1, 2]
    await cancel_while_frozen(server, acquire("third"))
    # The retry (a client whose call was cut off sends the same request again) adds a hold of
    # its own, rather than being answered as if it had the one given back.
    assert (await acquire("third")).holds == 3
    outcomes = [await backend.release(_LOCK, holder.id, first.token) for _ in range(3)]
    assert outcomes == [ReleaseOutcome.DECREMENTED] * 2 + [ReleaseOutcome.RELEASED]


async def test_redis_backend_closes_right_after_its_waiting_acquisitions_are_cancelled(
    server: RedisServer,
) -> None:
    # Regression: the unsubscription sent as the waits end swallowed the cancellation of the
    # channels' writer (asyncio.wait_for on Python 3.11), and `close` waited for it forever.
    backend = RedisLockBackend(TesseraSettings(redis_url=server.url))
    holder = await backend.open_session(_TTL_S)
    waiters = [await backend.open_session(_TTL_S) for _ in range(2)]
    assert await backend.acquire(_LOCK, holder.id, LockMode.EXCLUSIVE, wait_s=0) is not None
    waits = [
        asyncio.create_task(backend.acquire(_LOCK, waiter.id, LockMode.EXCLUSIVE, wait_s=20))
        for waiter in waiters
    ]
    async with asyncio.timeout(5):
        # Polls on purpose: waits, from outside, for the waiting entries.
        while len((await backend.describe(_LOCK)).waiters) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    for wait in waits:
        wait.cancel()
    await asyncio.gather(*waits, return_exceptions=True)
    # Not under asyncio.timeout: `close` swallows a cancellation while it waits for its tasks.
    closing = asyncio.create_task(backend.close())
    done, _ = await asyncio.wait([closing], timeout=5)
    assert closing in done, "the backend did not close"
