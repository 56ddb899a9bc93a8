import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from tessera.client.registry import Registration, RegistryClient, ServiceWatch
from tessera.core.embedded import EtcdServer, free_port
from tessera.proto.registry.v1 import registry_pb2
from tessera.testing import ServerFactory

from .conftest import FAST_TIMERS, StartReplica, instance

SETTLE_S = 15.0


async def _collect(
    stream: AsyncIterator[registry_pb2.WatchResponse], into: list[registry_pb2.WatchResponse]
) -> None:
    async for response in stream:
        into.append(response)


async def test_registry_etcd_restart_loses_no_instance_and_watchers_miss_nothing(
    etcd_factory: ServerFactory[EtcdServer], start_replica: StartReplica, namespace: str
) -> None:
    etcd = await asyncio.to_thread(etcd_factory)
    async with (
        start_replica([etcd.endpoint]) as replica,
        RegistryClient([replica.address]) as client,
        Registration(client) as registration,
    ):
        written = [
            (await client.register(instance(namespace, id=f"p{n}"))).revision for n in range(3)
        ]
        for n in range(2):
            await registration.add(instance(namespace, id=f"e{n}"))
        seen: list[registry_pb2.WatchResponse] = []
        collector = asyncio.create_task(_collect(client.watch(namespace, "api"), seen))
        async with ServiceWatch(client, namespace, "api") as watch:
            await asyncio.to_thread(etcd.restart)
            for n in range(3, 6):
                reply = await _register_retrying(client, instance(namespace, id=f"p{n}"))
                written.append(reply.revision)
            everyone = {"p0", "p1", "p2", "p3", "p4", "p5", "e0", "e1"}
            await watch.wait_for(lambda w: set(w.instances) == everyone, SETTLE_S)
            # Past the lease TTL the ephemeral instances must still be there and healthy.
            await asyncio.sleep(FAST_TIMERS["lease_ttl_s"] + 1)
            listed = await client.list(namespace, "api")
            assert {i.id for i in listed.service.instances} == everyone
            assert all(i.healthy for i in listed.service.instances)
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)

    assert seen[0].reset
    changes = [(r.revision, e.instance.id) for r in seen[1:] for e in r.events]
    revisions = [revision for revision, _ in changes]
    assert revisions == sorted(set(revisions)), "a change was delivered twice or out of order"
    assert set(written[3:]) <= set(revisions), "a change after the restart was missed"


async def _register_retrying(
    client: RegistryClient, spec: registry_pb2.Instance
) -> registry_pb2.RegisterResponse:
    # etcd may still be electing itself leader right after the restart: writes are retryable.
    for _ in range(50):
        try:
            return await client.register(spec)
        except Exception as error:
            last = error
            await asyncio.sleep(0.2)
    raise AssertionError(f"registry never recovered: {last!r}")


@pytest.fixture
def registry_process(etcd_server: EtcdServer) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A registry replica in its own process, so the test can SIGKILL it."""
    port = free_port()
    env = {
        **os.environ,
        "TESSERA_PORT": str(port),
        "TESSERA_METRICS_PORT": "0",
        "TESSERA_ETCD_ENDPOINTS": etcd_server.endpoint,
        "TESSERA_LOG_FORMAT": "console",
        **{f"TESSERA_{name.upper()}": str(value) for name, value in FAST_TIMERS.items()},
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tessera.registry"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield process, f"127.0.0.1:{port}"
    if process.poll() is None:
        process.kill()
    process.wait(10)


async def test_registry_killed_replica_clients_move_to_the_other_and_lose_nothing(
    registry_process: tuple[subprocess.Popen[bytes], str],
    start_replica: StartReplica,
    namespace: str,
) -> None:
    process, first_address = registry_process
    async with grpc.aio.insecure_channel(first_address) as channel:
        await asyncio.wait_for(channel.channel_ready(), 20)
    async with (
        start_replica() as second,
        RegistryClient([first_address, second.address]) as client,
        RegistryClient([second.address]) as observer,
    ):
        registration = Registration(client)
        ids = {await registration.add(instance(namespace, id=f"f{n}")) for n in range(2)}
        async with ServiceWatch(observer, namespace, "api") as watch:
            await watch.wait_for(lambda w: set(w.instances) == ids, SETTLE_S)
            smallest = [len(ids)]

            async def record_smallest() -> None:
                while True:
                    smallest[0] = min(smallest[0], len(watch.instances))
                    await asyncio.sleep(0.01)

            recorder = asyncio.create_task(record_smallest())
            process.send_signal(signal.SIGKILL)
            owner = second.service.owner
            await watch.wait_for(
                lambda w: (
                    all(w.instances[i].owner == owner for i in ids if i in w.instances)
                    and set(w.instances) == ids
                ),
                SETTLE_S,
            )
            # Past the dead replica's lease TTL nothing may disappear.
            await asyncio.sleep(FAST_TIMERS["lease_ttl_s"] + 1)
            recorder.cancel()
            await asyncio.gather(recorder, return_exceptions=True)
            assert smallest[0] == len(ids), "an instance vanished during the failover"
            assert set(watch.instances) == ids
            assert all(watch.instances[i].healthy for i in ids)
        await registration.close()


async def test_registry_graceful_stop_leaves_instances_for_the_other_replica(
    start_replica: StartReplica, namespace: str
) -> None:
    async with (
        start_replica() as second,
        RegistryClient([second.address]) as observer,
        ServiceWatch(observer, namespace, "api") as watch,
    ):
        async with start_replica() as first:
            client = RegistryClient([first.address, second.address])
            registration = Registration(client)
            instance_id = await registration.add(instance(namespace, id="g1"))
            await watch.wait_for(lambda w: instance_id in w.instances, SETTLE_S)
        # The first replica stopped (SIGTERM-style): its lease was not revoked, so the instance
        # stays while the client moves over and the second replica adopts it.
        assert instance_id in watch.instances
        await watch.wait_for(
            lambda w: (
                instance_id in w.instances
                and w.instances[instance_id].owner == second.service.owner
            ),
            SETTLE_S,
        )
        assert registration.reregistrations == 0
        await registration.close()
        await client.close()
