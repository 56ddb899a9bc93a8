from __future__ import annotations

import asyncio
import uuid

import pytest

from tessera.client.lock import Leader, LockClient, SyncLockClient
from tessera.core import DeadlineExceededError, FailedPreconditionError
from tessera.proto.lock.v1 import lock_pb2, lock_pb2_grpc
from tessera.testing import RunningService


def unique(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex}"


async def test_lock_election_campaign_proclaim_observe_resign(lock_client: LockClient) -> None:
    name = unique("election")
    observed: list[Leader | None] = []
    changes = asyncio.Queue[Leader | None]()

    async def observe() -> None:
        async for leader in lock_client.observe(name):
            await changes.put(leader)

    observer = asyncio.create_task(observe())
    try:
        async with asyncio.timeout(10):
            observed.append(await changes.get())
            async with lock_client.campaign(name, b"node-a", ttl=5) as leading:
                assert not leading.lost
                observed.append(await changes.get())
                assert await lock_client.leader(name) == Leader(
                    leading.session.id, leading.token, b"node-a"
                )
                resign = asyncio.Event()
                second = asyncio.ensure_future(_lead_until(lock_client, name, resign))
                await leading.proclaim(b"node-a:2")
                observed.append(await changes.get())
                assert not second.done()
            # Leading until its leadership was observed: Observe may coalesce changes.
            observed.append(await changes.get())
            resign.set()
            successor = await second
            observed.append(await changes.get())
    finally:
        observer.cancel()
    assert observed == [
        None,
        Leader(leading.session.id, leading.token, b"node-a"),
        Leader(leading.session.id, leading.token, b"node-a:2"),
        Leader(successor.session_id, successor.token, b"node-b"),
        None,
    ]
    assert successor.token > leading.token
    assert await lock_client.leader(name) is None


async def _lead_until(client: LockClient, name: str, resign: asyncio.Event) -> Leader:
    async with client.campaign(name, b"node-b", ttl=5, wait=5) as leading:
        await resign.wait()
        return Leader(leading.session.id, leading.token, leading.value)


async def test_lock_election_stale_leader_cannot_proclaim_or_resign(
    lock_client: LockClient, lock_service: RunningService
) -> None:
    name = unique("election-stale")
    stub = lock_pb2_grpc.LockStub(lock_service.channel)
    async with lock_client.campaign(name, b"a", ttl=5) as leading:
        token = leading.token
        session = leading.session.id
        with pytest.raises(DeadlineExceededError):
            async with lock_client.campaign(name, b"b", ttl=5, wait=0.2):
                pass
    # Resigned on exit: its token no longer leads.
    with pytest.raises(FailedPreconditionError, match="token"):
        await leading.proclaim(b"late")
    resigned = await stub.Resign(lock_pb2.ResignRequest(name=name, session_id=session, token=token))
    assert not resigned.resigned
    assert await lock_client.leader(name) is None


def _sync_lead(target: str, name: str) -> tuple[Leader | None, Leader | None, list[bytes | None]]:
    with SyncLockClient(target) as client:
        changes = client.observe(name)
        seen = [next(changes)]
        with client.campaign(name, b"v1", ttl=5) as leading:
            seen.append(next(changes))
            client.proclaim(leading, b"v2")
            seen.append(next(changes))
            during = client.leader(name)
        seen.append(next(changes))
        changes.close()
        return during, client.leader(name), [None if s is None else s.value for s in seen]


async def test_lock_election_sync_facade_leads_proclaims_and_observes(
    lock_service: RunningService,
) -> None:
    name = unique("election-sync")
    during, after, seen = await asyncio.to_thread(_sync_lead, lock_service.server.address, name)
    assert during is not None
    assert during.value == b"v2"
    assert after is None
    assert seen == [None, b"v1", b"v2", None]
