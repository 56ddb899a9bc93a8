import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from tessera.core import ValidationError
from tessera.core.embedded import EtcdServer
from tessera.core.etcd import EtcdClient
from tessera.proto.ratelimit.v1 import ratelimit_pb2 as pb
from tessera.proto.ratelimit.v1 import ratelimit_pb2_grpc
from tessera.ratelimit import ConfigStore, config_key, installed_limiters
from tessera.testing import ServerFactory

RULE = """\
domain: {domain}
descriptors:
  - key: user
    rate_limit:
      unit: hour
      requests_per_unit: {limit}
"""


@pytest.fixture
async def etcd(etcd_server: EtcdServer) -> AsyncIterator[EtcdClient]:
    async with EtcdClient([etcd_server.endpoint]) as client:
        yield client


def check_request(domain: str, user: str) -> pb.CheckRequest:
    return pb.CheckRequest(
        domain=domain, descriptors=[pb.Descriptor(entries=[pb.Entry(key="user", value=user)])]
    )


async def served_version(stub: ratelimit_pb2_grpc.RateLimiterStub, domain: str) -> str:
    request = pb.ExplainRequest(
        domain=domain, descriptor=pb.Descriptor(entries=[pb.Entry(key="user", value="probe")])
    )
    try:
        return (await stub.Explain(request)).config_version
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return ""


async def wait_for_version(
    stub: ratelimit_pb2_grpc.RateLimiterStub, domain: str, version: str
) -> None:
    async with asyncio.timeout(10):
        while await served_version(stub, domain) != version:  # noqa: ASYNC110 - polls a server
            await asyncio.sleep(0.05)


async def test_ratelimit_etcd_changes_apply_without_restart(start_ratelimit, etcd) -> None:
    domain = f"live-{uuid.uuid4().hex[:8]}"
    store = ConfigStore(etcd, algorithms=installed_limiters())
    async with start_ratelimit() as (running, _):
        stub = ratelimit_pb2_grpc.RateLimiterStub(running.channel)
        first = await store.apply(RULE.format(domain=domain, limit=1))
        await wait_for_version(stub, domain, first.version)
        codes = [(await stub.Check(check_request(domain, "a"))).overall_code for _ in range(2)]
        assert codes == [pb.CODE_OK, pb.CODE_OVER_LIMIT]

        with pytest.raises(ValidationError) as raised:
            await store.apply(RULE.format(domain=domain, limit=-3))
        assert [v.field for v in raised.value.violations] == [
            "descriptors[0].rate_limit.requests_per_unit"
        ]
        assert (await store.get(domain)).version == first.version

        # Written around the validation: the service keeps the version it has.
        await etcd.put(config_key(domain), "domain: [broken")
        second = await store.apply(RULE.format(domain=domain, limit=5))
        await wait_for_version(stub, domain, second.version)
        decision = (await stub.Check(check_request(domain, "b"))).decisions[0]
        assert decision.limit == 5

        assert await store.delete(domain)
        await wait_for_version(stub, domain, "")


async def test_ratelimit_etcd_down_keeps_last_config(
    start_ratelimit, etcd_factory: ServerFactory[EtcdServer]
) -> None:
    server = await asyncio.to_thread(etcd_factory)
    domain = f"kept-{uuid.uuid4().hex[:8]}"
    async with (
        EtcdClient([server.endpoint]) as etcd,
        start_ratelimit(etcd_endpoints=[server.endpoint]) as (running, _),
    ):
        stub = ratelimit_pb2_grpc.RateLimiterStub(running.channel)
        applied = await ConfigStore(etcd, algorithms=installed_limiters()).apply(
            RULE.format(domain=domain, limit=2)
        )
        await wait_for_version(stub, domain, applied.version)
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(1.5)  # the watch notices and retries in the background
        codes = [(await stub.Check(check_request(domain, "a"))).overall_code for _ in range(3)]
        assert codes == [pb.CODE_OK, pb.CODE_OK, pb.CODE_OVER_LIMIT]
        assert await served_version(stub, domain) == applied.version
