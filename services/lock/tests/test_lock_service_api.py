from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import grpc
import pytest

from tessera.client.lock import LockClient
from tessera.core import DeadlineExceededError, NotFoundError
from tessera.lock import LockSettings, lock_binding
from tessera.lock_backends import EtcdLockBackend
from tessera.proto.lock.v1 import lock_pb2, lock_pb2_grpc
from tessera.testing import RunningService, ServiceStarter

Until = Callable[[Callable[[], Awaitable[bool]]], Awaitable[None]]


async def has_waiters(client: LockClient, name: str, count: int) -> bool:
    return len((await client.describe(name)).waiters) == count


def unique(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex}"


async def test_lock_sdk_holds_describes_and_releases(lock_client: LockClient) -> None:
    name = unique("api")
    async with lock_client.lock(name, ttl=5) as held:
        assert held.token > 0
        assert not held.lost
        described = await lock_client.describe(name)
        assert [h.session_id for h in described.holders] == [held.session.id]
        assert described.holders[0].token == held.token
        assert described.holders[0].HasField("lease_expires_at")
        assert await lock_client.validate_token(name, held.token)
        assert not await lock_client.validate_token(name, held.token + 1)
    assert not (await lock_client.describe(name)).holders
    assert not await lock_client.validate_token(name, held.token)


async def test_lock_sdk_renews_the_session_past_its_ttl(lock_client: LockClient) -> None:
    name = unique("renew")
    async with lock_client.lock(name, ttl=1) as held:
        await asyncio.sleep(2.5)
        assert not held.lost
        assert await lock_client.validate_token(name, held.token)


async def test_lock_sdk_wait_times_out(lock_client: LockClient) -> None:
    name = unique("busy")
    async with lock_client.lock(name, ttl=5):
        with pytest.raises(DeadlineExceededError):
            async with lock_client.lock(name, ttl=5, wait=0.2):
                pass
        assert not (await lock_client.describe(name)).waiters


async def test_lock_list_by_prefix(lock_client: LockClient) -> None:
    prefix = unique("list")
    async with lock_client.lock(f"{prefix}/a", ttl=5), lock_client.lock(f"{prefix}/b", ttl=5):
        listed = await lock_client.list(prefix)
        assert [lock.name for lock in listed] == [f"{prefix}/a", f"{prefix}/b"]


async def test_lock_acquire_with_unknown_session_is_not_found(lock_client: LockClient) -> None:
    session = await lock_client.open_session(5)
    await session.close()
    with pytest.raises(NotFoundError):
        await lock_client.acquire(unique("gone"), session, wait=0)


async def test_lock_cancelled_acquire_leaves_the_queue(
    lock_client: LockClient, lock_service: RunningService, until: Until
) -> None:
    name = unique("cancel")
    stub = lock_pb2_grpc.LockStub(lock_service.channel)
    async with lock_client.lock(name, ttl=5):
        waiter = await lock_client.open_session(5)
        call = stub.Acquire(
            lock_pb2.AcquireRequest(
                name=name, session_id=waiter.id, mode=lock_pb2.LOCK_MODE_EXCLUSIVE
            )
        )
        await until(lambda: has_waiters(lock_client, name, 1))
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await until(lambda: has_waiters(lock_client, name, 0))
        await waiter.close()


async def test_lock_keepalive_stream_pushes_session_loss(lock_service: RunningService) -> None:
    stub = lock_pb2_grpc.LockStub(lock_service.channel)
    request = lock_pb2.OpenSessionRequest()
    request.ttl.FromSeconds(2)
    session = await stub.OpenSession(request)
    call = stub.KeepAlive()
    await call.write(lock_pb2.KeepAliveRequest(session_id=session.session_id))
    renewed = await call.read()
    assert isinstance(renewed, lock_pb2.KeepAliveResponse)
    assert not renewed.lost
    assert renewed.ttl.seconds >= 2
    # Silence: the server must notice the expiry by itself and say so.
    async with asyncio.timeout(10):
        pushed = await call.read()
    assert isinstance(pushed, lock_pb2.KeepAliveResponse)
    assert pushed.lost
    assert await call.read() is grpc.aio.EOF


async def test_lock_fifo_and_tokens_hold_across_two_replicas(
    lock_settings: LockSettings,
    lock_service: RunningService,
    running_service: ServiceStarter,
    until: Until,
) -> None:
    other_backend = EtcdLockBackend(lock_settings)
    try:
        replica = await running_service([lock_binding(lock_settings, other_backend)], lock_settings)
        clients = [LockClient(lock_service.channel), LockClient(replica.channel)]
        name = unique("replicas")
        sessions = [await clients[i % 2].open_session(10) for i in range(4)]
        first = await clients[0].acquire(name, sessions[0], wait=0)
        assert first is not None
        waits = []
        for index in range(1, 4):
            waits.append(
                asyncio.create_task(clients[index % 2].acquire(name, sessions[index], wait=10))
            )
            await until(lambda index=index: has_waiters(clients[1], name, index))
        holder = first
        tokens = [first.token]
        for index, wait in enumerate(waits, start=1):
            assert await clients[(index - 1) % 2].release(holder)
            async with asyncio.timeout(10):
                granted = await wait
            assert granted is not None
            assert granted.session is sessions[index]
            tokens.append(granted.token)
            holder = granted
        assert tokens == sorted(set(tokens))
        for session in sessions:
            await session.close()
    finally:
        await other_backend.close()


async def test_lock_decorator_serialises_calls_and_returns_their_result(
    lock_client: LockClient,
) -> None:
    active = 0
    overlaps = 0

    @lock_client.locked(unique("decorated"), ttl=5, wait=10)
    async def critical(value: int) -> int:
        nonlocal active, overlaps
        active += 1
        overlaps += active > 1
        await asyncio.sleep(0.02)
        active -= 1
        return value * 2

    assert await asyncio.gather(*(critical(i) for i in range(4))) == [0, 2, 4, 6]
    assert overlaps == 0
