"""`tessera dev up --cluster`: the docker-compose topology (3 etcd members, two replicas of the
replicated services) as real processes, and a replica that dies while its twin keeps serving."""

import asyncio
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs

from tessera.client.devstack import (
    CLUSTER_ETCD_MEMBERS,
    CLUSTER_REPLICAS,
    ComponentStatus,
    DevStack,
    DevStackConfig,
    Health,
    StackManifest,
    StackPorts,
    check_components,
    discover_services,
)
from tessera.client.devstack._probes import probe_etcd, probe_grpc_health
from tessera.client.lock import LockClient
from tessera.client.registry import RegistryClient
from tessera.core import UnavailableError
from tessera.core.embedded import port_is_free

COMPOSE = Path(__file__).resolve().parents[3] / "deploy" / "docker-compose.yml"
HEALTHY_WITHIN_S = 60.0


def _cluster_ports(services: list[str]) -> StackPorts:
    """The cluster plan shifted to an offset where every one of its ports is free."""
    for _ in range(100):
        ports = StackPorts.plan(services, offset=random.randrange(1000, 9000), cluster=True)
        if all(port_is_free("127.0.0.1", port) for port in ports.all_ports().values()):
            return ports
    raise AssertionError("no free port offset found")


async def _wait_all_healthy(stack: DevStack, timeout_s: float) -> list[ComponentStatus]:
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = await stack.check()
        if all(s.health is Health.HEALTHY for s in statuses):
            return statuses
        if time.monotonic() > deadline:
            raise AssertionError(
                [f"{s.name}: {s.health} {s.detail}" for s in statuses if s.health != Health.HEALTHY]
            )
        await asyncio.sleep(0.5)


def test_cluster_plan_mirrors_the_compose_topology() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    etcd_members = [n for n, s in compose.items() if s.get("command", [""])[0] == "etcd"]
    assert len(etcd_members) == CLUSTER_ETCD_MEMBERS
    replicas: dict[str, int] = {}
    for service in compose.values():
        command = service.get("command", [""])[0]
        name = command.removeprefix("tessera-")
        if name in discover_services():
            replicas[name] = replicas.get(name, 0) + 1
    assert {name: n for name, n in replicas.items() if n > 1} == dict(CLUSTER_REPLICAS)

    ports = StackPorts.plan(sorted(discover_services()), cluster=True)
    names = [instance.name for instance in ports.instances()]
    assert names == [
        "governance",
        "lock-1",
        "lock-2",
        "ratelimit-1",
        "ratelimit-2",
        "registry-1",
        "registry-2",
    ]
    every_port = list(ports.all_ports().values())
    assert len(every_port) == len(set(every_port)), "two components share a port"
    assert ports.etcd_cluster == ((2379, 2380), (2381, 2382), (2383, 2384))


@pytest.mark.timeout(180)
async def test_cluster_stack_is_healthy_and_a_replica_kill_leaves_its_twin_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Beat sends the first heartbeat one interval after it starts.
    monkeypatch.setenv("TESSERA_HEARTBEAT_INTERVAL_S", "1")
    services = discover_services()
    ports = _cluster_ports(list(services))
    stack = DevStack(DevStackConfig(data_dir=tmp_path / "stack", ports=ports, services=services))
    try:
        await stack.start()
        statuses = await _wait_all_healthy(stack, HEALTHY_WITHIN_S)
        by_name = {s.name: s for s in statuses}
        expected = {f"etcd-{i}" for i in range(CLUSTER_ETCD_MEMBERS)} | {"redis", "worker", "beat"}
        expected |= {i.name for i in ports.instances()}
        assert set(by_name) == expected
        manifest = StackManifest.read(tmp_path / "stack")
        assert manifest is not None
        assert len(manifest.etcd_endpoints) == CLUSTER_ETCD_MEMBERS
        # `tessera status` judges the stack from its manifest: every member and replica.
        recorded = await check_components(list(manifest.components), 2.0)
        assert {s.name: s.health for s in recorded} == dict.fromkeys(expected, Health.HEALTHY)
        # Every process is told about every etcd member and every registry replica.
        environ = psutil.Process(by_name["registry-2"].pid).environ()
        assert environ["TESSERA_ETCD_ENDPOINTS"].split(",") == list(manifest.etcd_endpoints)
        assert environ["TESSERA_REGISTRY_ENDPOINTS"] == ",".join(
            by_name[f"registry-{i}"].endpoint for i in (1, 2)
        )

        for name in ("registry-1", "lock-1", "ratelimit-1"):
            pid = by_name[name].pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
        await _assert_failed(stack, {"registry-1", "lock-1", "ratelimit-1"})

        registry = RegistryClient([by_name["registry-1"].endpoint, by_name["registry-2"].endpoint])
        async with registry:
            listed = await _with_fail_over(registry)
        assert "tessera-governance" in {s.service for s in listed.services}

        locks = LockClient.connect(by_name["lock-2"].endpoint)
        async with locks, locks.lock("devstack-cluster", ttl=5, wait=5) as held:
            assert held.token > 0

        survivor = await probe_grpc_health(by_name["ratelimit-2"].endpoint, 2.0)
        assert survivor.healthy, survivor.detail
        # etcd keeps a leader with one member down: quorum is two of three.
        os.kill(by_name["etcd-0"].pid or 0, signal.SIGKILL)
        leader = await probe_etcd(by_name["etcd-1"].endpoint, 5.0)
        assert leader.healthy, leader.detail
    finally:
        await stack.stop()
    assert not (tmp_path / "stack" / "stack.json").exists()


async def _assert_failed(stack: DevStack, names: set[str]) -> None:
    deadline = time.monotonic() + 10
    while True:
        statuses = {s.name: s.health for s in await stack.check()}
        failed = {name for name, health in statuses.items() if health is Health.FAILED}
        if failed == names:
            break
        assert time.monotonic() < deadline, statuses
        await asyncio.sleep(0.2)
    others = {name: h for name, h in statuses.items() if name not in names}
    assert set(others.values()) == {Health.HEALTHY}, others


async def _with_fail_over(registry: RegistryClient) -> Any:
    # The client raises UNAVAILABLE once and moves to the next replica, as documented.
    for _ in range(3):
        try:
            return await registry.list_services("tessera")
        except UnavailableError:
            continue
    raise AssertionError("no registry replica answered")
