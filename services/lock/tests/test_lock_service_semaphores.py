from __future__ import annotations

import asyncio
import uuid

import pytest

from tessera.client.lock import LockClient, SyncLockClient
from tessera.core import DeadlineExceededError, FailedPreconditionError
from tessera.proto.lock.v1 import lock_pb2
from tessera.testing import RunningService


def unique(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex}"


async def test_lock_semaphore_grants_n_permits_then_queues_fifo(lock_client: LockClient) -> None:
    name = unique("semaphore")
    async with (
        lock_client.semaphore(name, permits=2, ttl=5) as first,
        lock_client.semaphore(name, permits=2, ttl=5) as second,
    ):
        assert first.mode == second.mode == "permit"
        assert second.token > first.token
        third = asyncio.ensure_future(_hold(lock_client, name))
        async with asyncio.timeout(5):
            while not (await lock_client.describe(name)).waiters:  # noqa: ASYNC110 -- from outside
                await asyncio.sleep(0.02)
        described = await lock_client.describe(name)
        assert described.permits == 2
        assert [h.mode for h in described.holders] == [lock_pb2.LOCK_MODE_PERMIT] * 2
        assert [h.token for h in described.holders] == [first.token, second.token]
        assert [w.queue_position for w in described.waiters] == [1]
        assert not third.done()
    async with asyncio.timeout(5):
        assert await third > second.token
    assert not (await lock_client.describe(name)).holders


async def _hold(client: LockClient, name: str) -> int:
    async with client.semaphore(name, permits=2, ttl=5, wait=5) as held:
        return held.token


async def test_lock_semaphore_times_out_and_refuses_another_size(lock_client: LockClient) -> None:
    name = unique("semaphore-full")
    async with lock_client.semaphore(name, permits=1, ttl=5) as held:
        with pytest.raises(DeadlineExceededError):
            async with lock_client.semaphore(name, permits=1, ttl=5, wait=0.2):
                pass
        with pytest.raises(FailedPreconditionError, match="permits"):
            async with lock_client.semaphore(name, permits=3, ttl=5, wait=0):
                pass
        with pytest.raises(FailedPreconditionError, match="semaphore"):
            async with lock_client.lock(name, ttl=5, wait=0):
                pass
        described = await lock_client.describe(name)
        assert [(h.token, len(described.waiters)) for h in described.holders] == [(held.token, 0)]


def _sync_permits(target: str, name: str) -> tuple[int, int]:
    with (
        SyncLockClient(target) as client,
        client.semaphore(name, permits=2, ttl=5) as first,
        client.semaphore(name, permits=2, ttl=5) as second,
    ):
        return first.token, second.token


async def test_lock_semaphore_sync_facade_holds_two_permits(lock_service: RunningService) -> None:
    name = unique("semaphore-sync")
    first, second = await asyncio.to_thread(_sync_permits, lock_service.server.address, name)
    assert second > first
