from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from itertools import count
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tessera.client.registry import RegistryClient
from tessera.core.embedded import EtcdServer
from tessera.proto.registry.v1 import registry_pb2, registry_pb2_grpc
from tessera.registry import RegistryService, RegistrySettings
from tessera.testing import serve_in_process

# Timers a hundred times shorter than the defaults, so liveness tests take seconds.
FAST_TIMERS: dict[str, Any] = {
    "heartbeat_interval_s": 0.1,
    "unhealthy_after_s": 0.6,
    "delete_after_s": 1.5,
    "sweep_interval_s": 0.05,
    "lease_ttl_s": 5,
    # Only the tests of the jobs elect a leader and send tasks.
    "run_jobs": False,
}

_namespaces = count()


@dataclass
class Replica:
    service: RegistryService
    stub: registry_pb2_grpc.RegistryStub
    address: str


StartReplica = Callable[..., AbstractAsyncContextManager[Replica]]


@pytest.fixture
def start_replica(etcd_server: EtcdServer) -> StartReplica:
    @asynccontextmanager
    async def start(endpoints: list[str] | None = None, **overrides: Any) -> AsyncIterator[Replica]:
        settings = RegistrySettings(
            port=0,
            metrics_port=None,
            etcd_endpoints=endpoints or [etcd_server.endpoint],
            **{**FAST_TIMERS, **overrides},
        )
        async with (
            RegistryService(settings) as service,
            serve_in_process([service.binding], settings) as running,
        ):
            stub = registry_pb2_grpc.RegistryStub(running.channel)
            yield Replica(service, stub, running.server.address)

    return start


@pytest_asyncio.fixture
async def replica(start_replica: StartReplica) -> AsyncIterator[Replica]:
    async with start_replica() as running:
        yield running


@pytest_asyncio.fixture
async def client(replica: Replica) -> AsyncIterator[RegistryClient]:
    async with RegistryClient([replica.address]) as registry_client:
        yield registry_client


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses, so tests sharing the session etcd stay independent."""
    return f"ns{next(_namespaces)}-{id(object()) % 100000}"


def instance(namespace: str, service: str = "api", **fields: Any) -> registry_pb2.Instance:
    fields.setdefault("host", "10.0.0.1")
    fields.setdefault("port", 8080)
    return registry_pb2.Instance(namespace=namespace, service=service, **fields)


def violations(error: grpc.aio.AioRpcError) -> list[str]:
    """The fields an INVALID_ARGUMENT error names (its `google.rpc.BadRequest`), in order."""
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            return [v.field for v in bad_request.field_violations]
    return []
