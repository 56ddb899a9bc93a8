from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from redis.asyncio import Redis

from tessera.client.registry import RegistryClient
from tessera.core import TesseraSettings
from tessera.core.embedded import EtcdServer, RedisServer
from tessera.core.etcd import EtcdClient
from tessera.core.plugins import HEALTH_CHECKS, load_plugins
from tessera.core.redis import connect_redis
from tessera.core.server import ServiceServer
from tessera.proto.registry.v1 import registry_pb2
from tessera.registry._probes import Prober, streak_key
from tessera.registry.jobs import probe_once

from .conftest import Replica, instance


@pytest_asyncio.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = connect_redis(redis_server.url)
    yield client
    await client.aclose()


def _checked(namespace: str, port: int, **spec: object) -> registry_pb2.Instance:
    return instance(
        namespace,
        "probed",
        id="p1",
        host="127.0.0.1",
        port=port,
        health_check=registry_pb2.HealthCheckSpec(kind="grpc", timeout_s=2, **spec),
    )


async def test_registry_probes_start_critical_pass_after_a_streak_and_never_delete(
    client: RegistryClient, etcd_server: EtcdServer, redis: Redis, namespace: str
) -> None:
    server = ServiceServer(TesseraSettings(port=0), [])
    await server.start()
    spec = {"successes_before_passing": 2, "failures_before_critical": 2}
    await client.register(_checked(namespace, server.port, **spec))
    [stored] = (await client.list(namespace, "probed")).service.instances
    assert not stored.healthy  # a new check starts critical

    async with EtcdClient([etcd_server.endpoint]) as etcd:
        prober = Prober(etcd, redis, load_plugins(HEALTH_CHECKS))

        async def probe() -> bool:
            [outcome] = [o for o in await prober.probe_all() if o.instance.startswith(namespace)]
            return outcome.healthy

        assert await probe() is False  # one pass of the two needed
        assert await probe() is True
        assert (await client.list(namespace, "probed")).service.instances[0].healthy

        await server.stop(0)
        assert await probe() is True  # one failure of the two needed
        assert await probe() is False
        listed = (await client.list(namespace, "probed")).service.instances
        assert [i.healthy for i in listed] == [False]  # unhealthy, still registered
        for _ in range(3):
            await probe()
        assert len((await client.list(namespace, "probed")).service.instances) == 1
        assert await redis.hget(streak_key(listed[0]), "failures") == b"5"


async def test_registry_probe_job_runs_with_worker_settings(
    client: RegistryClient, etcd_server: EtcdServer, redis_server: RedisServer, namespace: str
) -> None:
    async with ServiceServer(TesseraSettings(port=0), []) as server:
        await client.register(_checked(namespace, server.port))
        settings = TesseraSettings(
            etcd_endpoints=[etcd_server.endpoint], redis_url=redis_server.url
        )
        counts = await probe_once(settings)
    assert counts["probed"] >= 1
    assert counts["flipped"] >= 1
    assert (await client.list(namespace, "probed")).service.instances[0].healthy


async def test_registry_unknown_health_check_kind_is_invalid_argument(
    replica: Replica, namespace: str
) -> None:
    spec = registry_pb2.HealthCheckSpec(kind="carrier_pigeon", timeout_s=90)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await replica.stub.Register(
            registry_pb2.RegisterRequest(instance=instance(namespace, health_check=spec))
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    [detail] = [d for d in status.details if d.Is(error_details_pb2.BadRequest.DESCRIPTOR)]
    detail.Unpack(bad_request)
    fields = [v.field for v in bad_request.field_violations]
    assert fields == ["instance.health_check.kind", "instance.health_check.timeout_s"]
