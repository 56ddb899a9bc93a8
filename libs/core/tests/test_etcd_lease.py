import asyncio
import uuid

import pytest

from tessera.core import FailedPreconditionError
from tessera.core.embedded import EtcdServer
from tessera.core.etcd import EtcdClient, KeptLease, RetryPolicy
from tessera.testing import ServerFactory

FAST = RetryPolicy(attempts=3, initial_backoff_s=0.02, max_backoff_s=0.1, deadline_s=2.0)


async def _eventually_none(etcd: EtcdClient, key: str, within_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        if await etcd.get(key) is None:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_etcd_kept_lease_keeps_a_key_alive_past_its_ttl(etcd_server: EtcdServer) -> None:
    key = f"/test/etcd-lease/{uuid.uuid4().hex}"
    async with EtcdClient([etcd_server.endpoint]) as etcd:
        async with etcd.keep_lease(2) as lease:
            assert lease.ttl_s == 2
            await etcd.put(key, b"alive", lease=lease.id)
            await asyncio.sleep(2 * lease.ttl_s + 0.5)
            got = await etcd.get(key)
            assert got is not None
            assert got.lease == lease.id
            assert not lease.lost.is_set()
        # Revoked on exit: the key goes with the lease, at once.
        assert await etcd.get(key) is None
        assert await etcd.refresh_lease(lease.id) == 0


async def test_etcd_kept_lease_is_lost_after_a_pause_longer_than_its_ttl(
    etcd_factory: ServerFactory[EtcdServer],
) -> None:
    server = await asyncio.to_thread(etcd_factory)
    async with (
        EtcdClient([server.endpoint], timeout_s=1.0, retry=FAST) as etcd,
        etcd.keep_lease(2) as lease,
    ):
        await etcd.put("/lease/k", b"v", lease=lease.id)
        server.pause()
        try:
            await asyncio.sleep(lease.ttl_s + 1.5)
        finally:
            server.resume()
        await asyncio.wait_for(lease.lost.wait(), 5)
        # Reported, never re-granted behind the owner's back: etcd expired the lease and its
        # key, and the lease keeps its ID.
        assert await _eventually_none(etcd, "/lease/k", within_s=5)
        assert await etcd.refresh_lease(lease.id) == 0


async def test_etcd_kept_lease_notices_a_revoke_by_someone_else(etcd_server: EtcdServer) -> None:
    async with EtcdClient([etcd_server.endpoint]) as etcd, etcd.keep_lease(3) as lease:
        await etcd.revoke_lease(lease.id)
        await asyncio.wait_for(lease.lost.wait(), 5)


async def test_etcd_kept_lease_is_lost_when_etcd_restarts_without_its_data(
    etcd_factory: ServerFactory[EtcdServer],
) -> None:
    first = await asyncio.to_thread(etcd_factory)
    async with EtcdClient([first.endpoint], retry=FAST) as etcd, etcd.keep_lease(2) as lease:
        await asyncio.to_thread(first.kill)
        # A fresh member on the same port: the cluster forgot every lease.
        await asyncio.to_thread(etcd_factory, port=first.port, peer_port=first.peer_port)
        await asyncio.wait_for(lease.lost.wait(), 10)
        assert await etcd.refresh_lease(lease.id) == 0


def test_etcd_kept_lease_id_needs_a_grant(etcd_server: EtcdServer) -> None:
    lease = KeptLease(EtcdClient([etcd_server.endpoint]), 5)
    with pytest.raises(FailedPreconditionError):
        _ = lease.id
