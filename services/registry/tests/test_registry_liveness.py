import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio

from tessera.client.registry import Registration, RegistryClient, ServiceWatch
from tessera.testing import TcpProxy

from .conftest import FAST_TIMERS, Replica, StartReplica, instance

# Generous bounds: the machine is shared, timers in FAST_TIMERS are a fraction of these.
SETTLE_S = 10.0


@pytest_asyncio.fixture
async def proxy(replica: Replica) -> AsyncIterator[TcpProxy]:
    """A proxy to the replica: blackholing it silences a client's heartbeats, as a partition."""
    host, _, port = replica.address.rpartition(":")
    async with TcpProxy(host, int(port)) as running:
        yield running


@pytest_asyncio.fixture
async def partitioned_client(proxy: TcpProxy) -> AsyncIterator[RegistryClient]:
    async with RegistryClient([proxy.address]) as registry_client:
        yield registry_client


async def test_registry_keepalive_keeps_instance_healthy_and_silence_expires_it(
    client: RegistryClient, partitioned_client: RegistryClient, proxy: TcpProxy, namespace: str
) -> None:
    registration = Registration(partitioned_client)
    instance_id = await registration.add(instance(namespace, id="k1"))
    async with ServiceWatch(client, namespace, "api") as watch:
        await asyncio.sleep(1.0)  # longer than unhealthy_after_s: the beats must keep it healthy
        assert watch.instances[instance_id].healthy
        assert watch.instances[instance_id].ephemeral

        proxy.blackhole()
        await watch.wait_for(lambda w: not w.instances[instance_id].healthy, SETTLE_S)
        assert watch.stale  # push-empty protection: the last eligible set is still served
        assert [e.id for e in watch.endpoints] == [instance_id]
        await watch.wait_for(lambda w: instance_id not in w.instances, SETTLE_S)
    await proxy.heal()
    await registration.close()


async def test_registry_unhealthy_instance_revives_on_the_next_beat(
    start_replica: StartReplica, namespace: str
) -> None:
    # A long delete timer: the instance must come back by reviving, not by being registered anew.
    async with start_replica(delete_after_s=60) as replica:
        host, _, port = replica.address.rpartition(":")
        async with (
            TcpProxy(host, int(port)) as proxy,
            RegistryClient([replica.address]) as client,
            RegistryClient([proxy.address]) as partitioned,
        ):
            registration = Registration(partitioned)
            instance_id = await registration.add(instance(namespace, id="v1"))
            async with ServiceWatch(client, namespace, "api") as watch:
                proxy.blackhole()
                await watch.wait_for(lambda w: not w.instances[instance_id].healthy, SETTLE_S)
                await proxy.heal()
                await watch.wait_for(lambda w: w.instances[instance_id].healthy, SETTLE_S)
            assert registration.reregistrations == 0
            await registration.close()


async def test_registry_unknown_instance_is_registered_again_by_the_sdk(
    client: RegistryClient, namespace: str
) -> None:
    async with Registration(client) as registration:
        instance_id = await registration.add(instance(namespace, id="u1"))
        await client.deregister(namespace, "api", instance_id)  # behind the SDK's back
        async with ServiceWatch(client, namespace, "api") as watch:
            await watch.wait_for(lambda w: instance_id in w.instances, SETTLE_S)
        # The watch may see the instance before the SDK has the Register reply in hand.
        async with asyncio.timeout(SETTLE_S):
            # A plain counter has no event to await: poll it.
            while registration.reregistrations == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    assert not (await client.list(namespace, "api")).service.instances


async def test_registry_protection_threshold_keeps_the_set_served_when_half_go_silent(
    client: RegistryClient, partitioned_client: RegistryClient, proxy: TcpProxy, namespace: str
) -> None:
    await client.configure_service(namespace, "api", protect_threshold=0.6)
    alive, silent = Registration(client), Registration(partitioned_client)
    for n in range(2):
        await alive.add(instance(namespace, id=f"alive{n}"))
        await silent.add(instance(namespace, id=f"silent{n}"))
    everyone = {"alive0", "alive1", "silent0", "silent1"}
    async with ServiceWatch(client, namespace, "api") as watch:
        proxy.blackhole()
        await watch.wait_for(lambda w: sum(i.healthy for i in w.instances.values()) == 2, SETTLE_S)
        assert watch.protected
        assert {e.id for e in watch.endpoints} == everyone
        # Past delete_after_s a protected service loses no instance.
        await asyncio.sleep(2.0)
        assert set(watch.instances) == everyone
        listed = await client.list(namespace, "api")
        assert listed.service.protected
        picked = {(await client.resolve(namespace, "api")).instance.id for _ in range(8)}
        assert picked == everyone
    await proxy.heal()
    await alive.close()
    await silent.close()


async def test_registry_sweep_evicts_at_most_the_capped_share_per_run(
    start_replica: StartReplica, namespace: str
) -> None:
    # No background sweeps: this test runs them itself.
    async with (
        start_replica(sweep_interval_s=3600, max_evictions_per_sweep=0.2) as replica,
        RegistryClient([replica.address]) as client,
    ):
        # Ephemeral, and never a heartbeat: their timers run from registration.
        for n in range(10):
            await client.register(instance(namespace, id=f"c{n}", ephemeral=True))
        liveness = replica.service.liveness
        assert liveness is not None
        await asyncio.sleep(FAST_TIMERS["delete_after_s"] + 0.2)
        await liveness.sweep()
        remaining = len((await client.list(namespace, "api")).service.instances)
        assert remaining == 8  # 20 % of 10 per sweep
        await liveness.sweep()
        # 20 % of the 8 left is 1.6: one more.
        assert len((await client.list(namespace, "api")).service.instances) == 7
