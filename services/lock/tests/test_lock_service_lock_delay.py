from __future__ import annotations

import asyncio
import uuid

from tessera.client.lock import LockClient
from tessera.proto.lock.v1 import lock_pb2, lock_pb2_grpc
from tessera.testing import RunningService


async def test_lock_delay_holds_the_lock_back_after_an_expiry(
    lock_service: RunningService, lock_client: LockClient
) -> None:
    name = f"delay/{uuid.uuid4().hex}"
    stub = lock_pb2_grpc.LockStub(lock_service.channel)
    open_request = lock_pb2.OpenSessionRequest()
    open_request.ttl.FromSeconds(2)
    loop = asyncio.get_running_loop()
    opened = loop.time()
    # A holder that never renews its session: it is released involuntarily.
    stale = await stub.OpenSession(open_request)
    acquire = lock_pb2.AcquireRequest(
        name=name, session_id=stale.session_id, mode=lock_pb2.LOCK_MODE_EXCLUSIVE
    )
    acquire.lock_delay.FromSeconds(2)
    assert (await stub.TryAcquire(acquire)).acquired
    async with lock_client.lock(name, ttl=5, wait=15) as held:
        assert loop.time() - opened >= 2 + 2 - 0.25
        assert held.token > 0
    # A holder that releases (here: the SDK's, with a long lock-delay) leaves no delay behind.
    async with lock_client.lock(name, ttl=5, lock_delay=60):
        pass
    session = await lock_client.open_session(5)
    try:
        again = await lock_client.try_acquire(name, session)
        assert again is not None
        assert await lock_client.release(again)
    finally:
        await session.close()
