"""The SDK's semaphore and leadership decorators (async and sync), against a real lock service."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

from tessera.client.lock import LockClient, SyncLockClient
from tessera.core import FailedPreconditionError
from tessera.proto.lock.v1 import lock_pb2, lock_pb2_grpc
from tessera.testing import RunningService


def _unique(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex}"


async def test_lock_with_permit_runs_at_most_n_calls_at_once(lock_client: LockClient) -> None:
    name = _unique("decorated-permit")
    active = 0
    most = 0

    @lock_client.with_permit(name, permits=2, ttl=5, wait=10)
    async def bounded(value: int) -> int:
        nonlocal active, most
        active += 1
        most = max(most, active)
        await asyncio.sleep(0.1)
        active -= 1
        return value + 1

    assert await asyncio.gather(*(bounded(i) for i in range(5))) == [1, 2, 3, 4, 5]
    assert most == 2
    described = await lock_client.describe(name)
    assert not described.holders
    assert not described.waiters


async def test_lock_leading_runs_each_call_as_leader_then_resigns(
    lock_client: LockClient,
) -> None:
    name = _unique("decorated-leader")
    seen: list[tuple[bytes, int]] = []

    @lock_client.leading(name, b"me", ttl=5, wait=10)
    async def lead(step: int) -> int:
        leader = await lock_client.leader(name)
        assert leader is not None
        seen.append((leader.value, leader.token))
        return step

    assert await lead(1) == 1
    assert await lead(2) == 2
    assert [value for value, _ in seen] == [b"me", b"me"]
    assert seen[1][1] > seen[0][1], "each call is a new leadership with a higher token"
    assert await lock_client.leader(name) is None


async def _close_holders_session(service: RunningService, name: str) -> None:
    """Close the session holding `name` from outside, as an operator or an expiry would."""
    stub = lock_pb2_grpc.LockStub(service.channel)
    holder = (await stub.Describe(lock_pb2.DescribeRequest(name=name))).lock.holders[0]
    await stub.CloseSession(lock_pb2.CloseSessionRequest(session_id=holder.session_id))


@pytest.mark.parametrize("primitive", ["permit", "leadership"])
async def test_lock_decorated_call_is_cancelled_when_its_grant_is_lost(
    lock_service: RunningService, lock_client: LockClient, primitive: str
) -> None:
    name = _unique(f"decorated-lost-{primitive}")
    cancelled = asyncio.Event()

    async def work() -> None:
        await _close_holders_session(lock_service, name)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    decorated = (
        lock_client.with_permit(name, permits=3, ttl=2, wait=10)(work)
        if primitive == "permit"
        else lock_client.leading(name, b"doomed", ttl=2, wait=10)(work)
    )
    async with asyncio.timeout(15):
        with pytest.raises(FailedPreconditionError, match="was lost while work ran"):
            await decorated()
    assert cancelled.is_set()


def _sync_decorated(target: str, name: str) -> tuple[int, list[bytes | None], int]:
    most = 0
    active = 0
    guard = threading.Lock()
    leaders: list[bytes | None] = []
    with SyncLockClient(target) as client:

        @client.with_permit(f"{name}/pool", permits=2, ttl=5, wait=10)
        def bounded() -> None:
            nonlocal active, most
            with guard:
                active += 1
                most = max(most, active)
            time.sleep(0.1)
            with guard:
                active -= 1

        @client.leading(f"{name}/election", b"sync", ttl=5, wait=10)
        def lead() -> int:
            found = client.leader(f"{name}/election")
            leaders.append(None if found is None else found.value)
            return 7

        threads = [threading.Thread(target=bounded) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        result = lead()
        after = client.leader(f"{name}/election")
        leaders.append(None if after is None else after.value)
    return most, leaders, result


async def test_lock_sync_facade_decorators_bound_calls_and_lead(
    lock_service: RunningService,
) -> None:
    # The facade blocks its caller, so it runs in a thread while this loop serves the service.
    most, leaders, result = await asyncio.to_thread(
        _sync_decorated, lock_service.server.address, _unique("decorated-sync")
    )
    assert most == 2
    assert leaders == [b"sync", None]
    assert result == 7


async def test_lock_cancelling_a_decorated_call_cancels_it_then_frees_the_permit(
    lock_client: LockClient,
) -> None:
    name = _unique("decorated-cancel")
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @lock_client.with_permit(name, permits=1, ttl=5, wait=10)
    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    call = asyncio.create_task(slow())
    async with asyncio.timeout(10):
        await started.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert cancelled.is_set()
    assert not (await lock_client.describe(name)).holders
