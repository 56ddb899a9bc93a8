from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Mapping

import pytest
import pytest_asyncio

from tessera.core.embedded import EtcdServer, RedisServer
from tessera.core.etcd import EtcdClient
from tessera.governance import GovernanceSettings, governance_binding
from tessera.proto.governance.v1 import governance_pb2_grpc
from tessera.testing import JobsProcess, RunningService, serve_in_process


@pytest_asyncio.fixture(scope="session")
async def governance_etcd(etcd_server: EtcdServer) -> AsyncIterator[EtcdClient]:
    async with EtcdClient([etcd_server.endpoint]) as etcd:
        yield etcd


@pytest_asyncio.fixture(scope="session")
async def governance_service(governance_etcd: EtcdClient) -> AsyncIterator[RunningService]:
    settings = GovernanceSettings(port=0, metrics_port=None, max_record_bytes=1024)
    async with serve_in_process([governance_binding(governance_etcd, settings)], settings) as svc:
        yield svc


@pytest.fixture
def governance(governance_service: RunningService) -> governance_pb2_grpc.GovernanceStub:
    return governance_pb2_grpc.GovernanceStub(governance_service.channel)


@pytest.fixture
def governance_target(governance_service: RunningService) -> str:
    return governance_service.server.address


@pytest.fixture
def name() -> str:
    """A subject or rule-set name no other test uses (the etcd server is shared)."""
    return f"t-{uuid.uuid4().hex[:12]}"


VISIBILITY_TIMEOUT_S = 3.0


@pytest.fixture
def start_worker(
    etcd_server: EtcdServer, redis_server: RedisServer, jobs_process: Callable[..., JobsProcess]
) -> Callable[..., JobsProcess]:
    """Start `tessera-worker -Q governance -c 1` processes (extra environment optional)."""
    env = {
        "TESSERA_REDIS_URL": redis_server.url,
        "TESSERA_ETCD_ENDPOINTS": etcd_server.endpoint,
        "TESSERA_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
    }

    def start(extra_env: Mapping[str, str] | None = None) -> JobsProcess:
        return jobs_process(
            "worker", "-Q", "governance", "-c", "1", env={**env, **(extra_env or {})}
        )

    return start
