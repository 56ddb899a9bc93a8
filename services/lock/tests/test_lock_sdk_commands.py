"""The SDK's use of the Commands stream: cancelling, closing and a dropped connection."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tessera.client.lock import HeldLock, LockClient, Session
from tessera.core import UnavailableError
from tessera.testing import RunningService, TcpProxy


async def _waiters(client: LockClient, name: str) -> list[str]:
    return [waiter.session_id for waiter in (await client.describe(name)).waiters]


async def _hold(client: LockClient, name: str) -> tuple[Session, HeldLock]:
    """Take the free lock `name` on a new session of `client`."""
    session = await client.open_session(10)
    held = await client.acquire(name, session, wait=0)
    assert held is not None
    return session, held


async def _until_waiters(client: LockClient, name: str, expected: list[str]) -> None:
    async with asyncio.timeout(5):
        while await _waiters(client, name) != expected:  # noqa: ASYNC110 -- observed from outside
            await asyncio.sleep(0.02)


async def test_lock_sdk_cancelled_acquire_leaves_the_queue(lock_client: LockClient) -> None:
    name = f"sdk-commands/{uuid.uuid4().hex}"
    holder, waiter = await lock_client.open_session(10), await lock_client.open_session(10)
    try:
        held = await lock_client.acquire(name, holder, wait=0)
        assert held is not None
        waiting = asyncio.create_task(lock_client.acquire(name, waiter, wait=30))
        await _until_waiters(lock_client, name, [waiter.id])
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await _until_waiters(lock_client, name, [])

        # The stream still serves the client: the next holder is granted at release.
        waiting = asyncio.create_task(lock_client.acquire(name, waiter, wait=30))
        await _until_waiters(lock_client, name, [waiter.id])
        assert await lock_client.release(held)
        async with asyncio.timeout(5):
            successor = await waiting
        assert successor is not None
        assert successor.token > held.token
    finally:
        await holder.close()
        await waiter.close()


async def test_lock_sdk_closing_the_client_abandons_its_waits(
    lock_service: RunningService, lock_client: LockClient
) -> None:
    name = f"sdk-commands/{uuid.uuid4().hex}"
    holder, held = await _hold(lock_client, name)
    closing = LockClient.connect(lock_service.server.address)
    waiter = await closing.open_session(10)
    waiting = asyncio.create_task(closing.acquire(name, waiter, wait=30))
    await _until_waiters(lock_client, name, [waiter.id])
    await closing.close()
    with pytest.raises(UnavailableError):
        await waiting
    await _until_waiters(lock_client, name, [])
    assert [h.token for h in (await lock_client.describe(name)).holders] == [held.token]
    await holder.close()


async def test_lock_sdk_dropped_stream_fails_the_wait_then_reopens(
    lock_service: RunningService, lock_client: LockClient
) -> None:
    name = f"sdk-commands/{uuid.uuid4().hex}"
    holder, held = await _hold(lock_client, name)
    host, _, port = lock_service.server.address.rpartition(":")
    async with TcpProxy(host, int(port)) as proxy, LockClient.connect(proxy.address) as client:
        waiter = await client.open_session(30)
        waiting = asyncio.create_task(client.acquire(name, waiter, wait=30))
        await _until_waiters(lock_client, name, [waiter.id])
        await proxy.drop()
        with pytest.raises(UnavailableError):
            async with asyncio.timeout(10):
                await waiting
        # The broken stream's wait left the queue on the server's side.
        await _until_waiters(lock_client, name, [])
        await proxy.heal()

        # The channel reconnects with gRPC's backoff (about a second); until then a command
        # fails fast with the retryable UnavailableError, after which the client opens a new
        # stream.
        async with asyncio.timeout(10):
            while True:
                try:
                    assert await client.try_acquire(name, waiter) is None
                    break
                except UnavailableError:
                    await asyncio.sleep(0.1)
        waiting = asyncio.create_task(client.acquire(name, waiter, wait=30))
        await _until_waiters(lock_client, name, [waiter.id])
        assert await lock_client.release(held)
        async with asyncio.timeout(10):
            successor = await waiting
        assert successor is not None
        assert successor.token > held.token
        assert await client.release(successor)
        await waiter.close()
    await holder.close()
