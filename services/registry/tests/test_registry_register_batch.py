import grpc
import pytest

from tessera.client.registry import RegistryClient
from tessera.core import ValidationError
from tessera.core.embedded import EtcdServer
from tessera.core.etcd import EtcdClient
from tessera.proto.registry.v1 import registry_pb2

from .conftest import Replica, instance, violations


async def _stored(etcd_server: EtcdServer, namespace: str) -> dict[str, registry_pb2.Instance]:
    async with EtcdClient([etcd_server.endpoint]) as etcd:
        snapshot = await etcd.get_prefix(f"/tessera/registry/instances/{namespace}/")
    return {
        item.key.decode().rsplit("/", 1)[1]: registry_pb2.Instance.FromString(item.value)
        for item in snapshot.items
    }


async def test_registry_register_many_stores_every_instance_in_order(
    client: RegistryClient, replica: Replica, namespace: str, etcd_server: EtcdServer
) -> None:
    # 1,100 instances: two RegisterBatch calls (1,000 + 100), several etcd transactions each.
    instances = [
        instance(namespace, id=f"i{n}", port=1000 + n, ephemeral=n % 2 == 0) for n in range(1100)
    ]
    instances.append(instance(namespace, id="i7", port=9999))  # a later one of the same id wins
    instances.append(instance(namespace))  # no id: one is generated

    results = await client.register_many(instances)

    assert [r.id for r in results[:-1]] == [i.id for i in instances[:-1]]
    assert len(results[-1].id) == 32
    assert all(r.heartbeat_interval_s == 0.1 for r in results)
    assert results[1100].revision > results[7].revision
    stored = await _stored(etcd_server, namespace)
    assert len(stored) == 1101
    assert stored["i7"].port == 9999
    assert stored["i8"].ephemeral
    assert stored["i8"].owner == replica.service.owner
    assert not stored["i9"].ephemeral
    # Writes return once this replica's view has them: List sees every one at once.
    listed = await client.list(namespace, "api")
    assert len(listed.service.instances) == 1101
    assert listed.revision >= max(r.revision for r in results)


async def test_registry_register_batch_bad_instance_names_it_and_stores_nothing(
    replica: Replica, namespace: str, etcd_server: EtcdServer
) -> None:
    registrations = [
        registry_pb2.RegisterRequest(instance=instance(namespace, id=f"ok{n}")) for n in range(5)
    ]
    registrations[3].instance.port = 0
    registrations[4].instance.host = "not a host"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await replica.stub.RegisterBatch(
            registry_pb2.RegisterBatchRequest(registrations=registrations)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(caught.value) == [
        "registrations[3].instance.port",
        "registrations[4].instance.host",
    ]
    assert await _stored(etcd_server, namespace) == {}


@pytest.mark.parametrize("count", [0, 1001])
async def test_registry_register_batch_size_is_bounded(
    client: RegistryClient, replica: Replica, namespace: str, count: int
) -> None:
    request = registry_pb2.RegisterBatchRequest(
        registrations=[
            registry_pb2.RegisterRequest(instance=instance(namespace, id=f"i{n}"))
            for n in range(count)
        ]
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await replica.stub.RegisterBatch(request)
    assert violations(caught.value) == ["registrations"]
    assert (await client.list(namespace, "api")).service.instances == []


async def test_registry_register_many_translates_bad_input(
    client: RegistryClient, namespace: str
) -> None:
    with pytest.raises(ValidationError, match=r"registrations\[1\]\.instance\.namespace"):
        await client.register_many([instance(namespace), instance("")])
    assert await client.register_many([]) == []
