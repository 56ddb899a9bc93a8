import asyncio
import time
from pathlib import Path

import aetcd
import pytest

from tessera.core.embedded import EtcdCluster, EtcdServer, ServerStartError
from tessera.testing import ServerFactory


async def _put_until_accepted(client: aetcd.Client, key: bytes, value: bytes) -> None:
    # Right after a leader dies the survivors need an election before they accept writes.
    deadline = time.monotonic() + 15
    while True:
        try:
            await asyncio.wait_for(client.put(key, value), 1)
            return
        except (TimeoutError, aetcd.exceptions.ClientError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_etcd_server_serves_reads_and_writes(etcd_server: EtcdServer) -> None:
    async with aetcd.Client(etcd_server.host, etcd_server.port) as client:
        await client.put(b"/test/embedded/etcd", b"written")
        got = await client.get(b"/test/embedded/etcd")

    assert got is not None
    assert got.value == b"written"
    assert etcd_server.endpoint == f"127.0.0.1:{etcd_server.port}"
    assert etcd_server.client_url == f"http://127.0.0.1:{etcd_server.port}"


async def test_paused_etcd_times_out_and_answers_again_after_resume(
    etcd_factory: ServerFactory[EtcdServer],
) -> None:
    server = await asyncio.to_thread(etcd_factory)
    async with aetcd.Client(server.host, server.port) as client:
        await client.put(b"k", b"before pause")

        server.pause()
        assert server.paused
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.get(b"k"), 0.5)

        server.resume()
        got = await asyncio.wait_for(client.get(b"k"), 5)

    assert got is not None
    assert got.value == b"before pause"


async def test_killed_etcd_restarts_on_the_same_port_with_its_data(
    etcd_factory: ServerFactory[EtcdServer],
) -> None:
    server = await asyncio.to_thread(etcd_factory)
    port = server.port
    async with aetcd.Client(server.host, server.port) as client:
        await client.put(b"k", b"durable")

    server.kill()
    assert not server.running
    assert server.pid is None
    await asyncio.to_thread(server.restart)

    assert server.port == port
    async with aetcd.Client(server.host, server.port) as client:
        got = await client.get(b"k")
    assert got is not None
    assert got.value == b"durable"


def test_etcd_does_not_start_on_a_port_another_server_uses(
    etcd_server: EtcdServer, tmp_path: Path
) -> None:
    taken = EtcdServer(tmp_path / "taken", port=etcd_server.port)

    with pytest.raises(ServerStartError) as raised:
        taken.start(timeout=10)

    assert raised.value.backend == "etcd"
    assert raised.value.log_path == taken.log_path
    assert f"port {etcd_server.port} is in use" in str(raised.value)
    assert not taken.running


async def test_etcd_cluster_write_is_visible_on_every_member(etcd_cluster: EtcdCluster) -> None:
    first = etcd_cluster.members[0]
    async with aetcd.Client(first.host, first.port) as client:
        await client.put(b"/test/embedded/cluster", b"replicated")

    for member in etcd_cluster.members:
        async with aetcd.Client(member.host, member.port) as client:
            got = await client.get(b"/test/embedded/cluster")
        assert got is not None, member
        assert got.value == b"replicated", member
    assert len(set(etcd_cluster.endpoints)) == 3
    assert etcd_cluster.leader() in etcd_cluster.members


async def test_etcd_cluster_stays_writable_when_its_leader_is_killed(
    etcd_cluster_factory: ServerFactory[EtcdCluster],
) -> None:
    cluster = await asyncio.to_thread(etcd_cluster_factory)
    old_leader = cluster.leader()
    assert old_leader is not None

    old_leader.kill()
    survivor = next(member for member in cluster.members if member is not old_leader)
    async with aetcd.Client(survivor.host, survivor.port) as client:
        await _put_until_accepted(client, b"k", b"after failover")

    new_leader = cluster.leader()
    assert new_leader is not None
    assert new_leader is not old_leader

    await asyncio.to_thread(old_leader.restart)
    async with aetcd.Client(old_leader.host, old_leader.port) as client:
        got = await client.get(b"k")
    assert got is not None
    assert got.value == b"after failover"
