import asyncio

import grpc
import pytest

from tessera.client.registry import RegistryClient
from tessera.core import NotFoundError, UnavailableError, ValidationError
from tessera.core.embedded import EtcdServer
from tessera.core.etcd import EtcdClient
from tessera.proto.registry.v1 import registry_pb2

from .conftest import Replica, StartReplica, instance, violations

SERVING = registry_pb2.SERVING_STATUS_SERVING
DRAINING = registry_pb2.SERVING_STATUS_DRAINING


async def test_registry_register_then_list_returns_the_instance_with_defaults(
    client: RegistryClient, namespace: str
) -> None:
    reply = await client.register(instance(namespace, metadata={"zone": "a"}, tags=["blue"]))

    listed = await client.list(namespace, "api")
    assert listed.revision >= reply.revision
    [found] = listed.service.instances
    assert found.id == reply.id
    assert len(reply.id) == 32
    assert (found.host, found.port, found.weight) == ("10.0.0.1", 8080, 1.0)
    assert (found.status, found.healthy, found.ephemeral) == (SERVING, True, False)
    assert found.revision == reply.revision
    assert dict(found.metadata) == {"zone": "a"}
    assert list(found.tags) == ["blue"]


async def test_registry_persistent_instance_is_stored_without_lease(
    client: RegistryClient, namespace: str, etcd_server: EtcdServer
) -> None:
    reply = await client.register(instance(namespace, id="p1"))
    async with EtcdClient([etcd_server.endpoint]) as etcd:
        stored = await etcd.get(f"/tessera/registry/instances/{namespace}/api/p1")
        assert stored is not None
        assert stored.lease == 0
        assert registry_pb2.Instance.FromString(stored.value).id == reply.id == "p1"


async def test_registry_ephemeral_instance_rides_on_the_process_lease(
    client: RegistryClient, replica: Replica, namespace: str, etcd_server: EtcdServer
) -> None:
    await client.register(instance(namespace, id="e1", ephemeral=True))
    async with EtcdClient([etcd_server.endpoint]) as etcd:
        stored = await etcd.get(f"/tessera/registry/instances/{namespace}/api/e1")
    assert stored is not None
    assert stored.lease != 0
    assert registry_pb2.Instance.FromString(stored.value).owner == replica.service.owner


async def test_registry_selector_filters_list(client: RegistryClient, namespace: str) -> None:
    for name, zone, version in (("a1", "a", "v1"), ("a2", "a", "v3"), ("b1", "b", "v2")):
        await client.register(
            instance(namespace, id=name, zone=zone, metadata={"version": version})
        )

    listed = await client.list(namespace, "api", "zone=a,version in (v1,v2)")
    assert [i.id for i in listed.service.instances] == ["a1"]
    listed = await client.list(namespace, "api", "version notin (v1)")
    assert [i.id for i in listed.service.instances] == ["a2", "b1"]


async def test_registry_drain_and_deregister(client: RegistryClient, namespace: str) -> None:
    await client.register(instance(namespace, id="d1"))
    await client.set_status(namespace, "api", "d1", DRAINING)
    [found] = (await client.list(namespace, "api")).service.instances
    assert found.status == DRAINING
    with pytest.raises(UnavailableError, match="no eligible instance"):
        await client.resolve(namespace, "api")

    await client.deregister(namespace, "api", "d1")
    assert not (await client.list(namespace, "api")).service.instances
    with pytest.raises(NotFoundError):
        await client.deregister(namespace, "api", "d1")
    with pytest.raises(NotFoundError):
        await client.set_status(namespace, "api", "d1", SERVING)


async def test_registry_maintenance_switch_makes_the_service_ineligible(
    client: RegistryClient, namespace: str
) -> None:
    await client.register(instance(namespace, id="m1"))
    await client.configure_service(namespace, "api", maintenance=True)
    listed = await client.list(namespace, "api")
    assert listed.service.maintenance
    with pytest.raises(UnavailableError):
        await client.resolve(namespace, "api")

    await client.configure_service(namespace, "api", maintenance=False)
    assert (await client.resolve(namespace, "api")).instance.id == "m1"


async def test_registry_resolve_spreads_and_hashes(client: RegistryClient, namespace: str) -> None:
    for name in ("r1", "r2", "r3"):
        await client.register(instance(namespace, id=name))

    picked = [(await client.resolve(namespace, "api")).instance.id for _ in range(6)]
    assert sorted(picked) == ["r1", "r1", "r2", "r2", "r3", "r3"]
    hashed = {
        (await client.resolve(namespace, "api", balancer="maglev", hash_key=b"user-7")).instance.id
        for _ in range(5)
    }
    assert len(hashed) == 1


async def test_registry_watch_sends_snapshot_then_only_selected_changes(
    client: RegistryClient, namespace: str
) -> None:
    await client.register(instance(namespace, id="w1", zone="a"))
    stream = client.watch(namespace, "api", "zone=a")
    snapshot = await anext(stream)
    assert snapshot.reset
    assert [e.instance.id for e in snapshot.events] == ["w1"]

    # A change outside the selection must not wake this watcher; the next one it sees is w2.
    await client.register(instance(namespace, id="other", zone="b"))
    second = await client.register(instance(namespace, id="w2", zone="a"))
    update = await asyncio.wait_for(anext(stream), 5)
    assert not update.reset
    assert update.revision == second.revision
    assert [(e.type, e.instance.id) for e in update.events] == [
        (registry_pb2.InstanceEvent.TYPE_PUT, "w2")
    ]
    # Leaving the selection is a delete for this watcher.
    await client.register(instance(namespace, id="w1", zone="b"))
    update = await asyncio.wait_for(anext(stream), 5)
    assert [(e.type, e.instance.id) for e in update.events] == [
        (registry_pb2.InstanceEvent.TYPE_DELETE, "w1")
    ]
    await stream.aclose()


async def test_registry_watch_resumes_from_a_revision_without_gaps_or_repeats(
    client: RegistryClient, namespace: str
) -> None:
    first = await client.register(instance(namespace, id="x1"))
    missed = [await client.register(instance(namespace, id=f"x{n}")) for n in (2, 3)]

    stream = client.watch(namespace, "api", start_revision=first.revision + 1)
    replayed = [await asyncio.wait_for(anext(stream), 5) for _ in missed]
    assert [r.revision for r in replayed] == [m.revision for m in missed]
    assert [r.events[0].instance.id for r in replayed] == ["x2", "x3"]
    assert not any(r.reset for r in replayed)
    await stream.aclose()


async def test_registry_watch_from_a_forgotten_revision_starts_with_a_snapshot(
    start_replica: StartReplica, namespace: str
) -> None:
    async with (
        start_replica(watch_history=1) as small,
        RegistryClient([small.address]) as client,
    ):
        first = await client.register(instance(namespace, id="h1"))
        await client.register(instance(namespace, id="h2"))
        await client.register(instance(namespace, id="h3"))
        stream = client.watch(namespace, "api", start_revision=first.revision + 1)
        response = await asyncio.wait_for(anext(stream), 5)
        assert response.reset
        assert [e.instance.id for e in response.events] == ["h1", "h2", "h3"]
        await stream.aclose()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"namespace": ""}, "instance.namespace"),
        ({"service": "Bad Name"}, "instance.service"),
        ({"host": "not a host"}, "instance.host"),
        ({"port": 0}, "instance.port"),
        ({"port": 70000}, "instance.port"),
        ({"weight": -1.0}, "instance.weight"),
        ({"metadata": {f"k{n}": "v" * 100 for n in range(50)}}, "instance.metadata"),
        ({"id": "has/slash"}, "instance.id"),
    ],
)
async def test_registry_register_bad_input_names_the_field_and_stores_nothing(
    replica: Replica, namespace: str, etcd_server: EtcdServer, fields: dict, field: str
) -> None:
    values = {"namespace": namespace, "service": "api", "host": "10.0.0.1", "port": 80}
    values.update(fields)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await replica.stub.Register(
            registry_pb2.RegisterRequest(instance=registry_pb2.Instance(**values))
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(caught.value)
    async with EtcdClient([etcd_server.endpoint]) as etcd:
        stored = await etcd.get_prefix(f"/tessera/registry/instances/{namespace}/")
    assert stored.items == ()


@pytest.mark.parametrize(
    ("request_kwargs", "field"),
    [
        ({"selector": "zone in (a,"}, "selector"),
        ({"balancer": "no_such_balancer"}, "balancer"),
        ({"service": ""}, "service"),
    ],
)
async def test_registry_resolve_bad_input_is_invalid_argument(
    replica: Replica, namespace: str, request_kwargs: dict, field: str
) -> None:
    values = {"namespace": namespace, "service": "api", **request_kwargs}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await replica.stub.Resolve(registry_pb2.ResolveRequest(**values))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(caught.value) == [field]


async def test_registry_bad_status_and_threshold_change_nothing(
    client: RegistryClient, namespace: str
) -> None:
    await client.register(instance(namespace, id="s1"))
    with pytest.raises(ValidationError, match="status"):
        await client.set_status(namespace, "api", "s1", registry_pb2.SERVING_STATUS_UNSPECIFIED)
    with pytest.raises(ValidationError, match="protect_threshold"):
        await client.configure_service(namespace, "api", protect_threshold=1.5)
    listed = await client.list(namespace, "api")
    assert listed.service.instances[0].status == SERVING
    assert listed.service.protect_threshold == 0.0
