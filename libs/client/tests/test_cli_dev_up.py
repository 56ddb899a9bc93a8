"""`tessera dev up` with real processes: etcd, Redis, a service, worker and beat on free ports."""

import json
import os
import queue
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tessera.client.devstack import MANIFEST_NAME, discover_services
from tessera.core import GRPC_TRANSPORT_ENVIRONMENT, SERVICE_PORTS
from tessera.core.embedded import port_is_free

FAKE_SERVICE = "devstack_fake_service"
# A real service process: the core server kit with no bindings of its own still serves
# grpc.health.v1 and honours TESSERA_PORT and SIGTERM like every service.
FAKE_SERVICE_SOURCE = """
from tessera.core import TesseraSettings
from tessera.core.server import run, static_bindings

run(lambda: TesseraSettings.from_env(service_name="fake"), static_bindings([]))
"""
HEALTHY_WITHIN_S = 90.0
REGISTERED_WITHIN_S = 20.0
STOPPED_WITHIN_S = 40.0


def _free_offset() -> int:
    """An offset that moves every design port (etcd, Redis, the services) to free ports."""
    design = [2379, 2380, 6379]
    design += [p for ports in SERVICE_PORTS.values() for p in (ports.port, ports.metrics_port)]
    for _ in range(100):
        offset = random.randrange(1000, 9000)
        if all(port_is_free("127.0.0.1", port + offset) for port in design):
            return offset
    raise AssertionError("no free port offset found")


def _stack_processes(data_dir: Path, redis_url: str) -> list[psutil.Process]:
    """Every live process of a stack: those naming its data directory or using its Redis.

    Catches processes the stack launched after a test looked at its children, and grandchildren
    that outlived their parent.
    """
    found = []
    for process in psutil.process_iter(["cmdline", "environ", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        environ = process.info["environ"] or {}
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if str(data_dir) in cmdline or environ.get("TESSERA_REDIS_URL") == redis_url:
            found.append(process)
    return found


class Lines:
    """Collects a process's stdout lines in a thread so the test can wait for one."""

    def __init__(self, stream: Any) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: Any) -> None:
        with stream:  # closed at end of file, when the process has exited
            for line in stream:
                self._queue.put(line.rstrip("\n"))

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def wait_for(self, text: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} within {timeout_s} s; got {self.seen}")


@pytest.fixture
def stack_env(make_distribution: Any, site_dir: Path) -> dict[str, str]:
    make_distribution(
        "devstack-fake-service",
        {"tessera.services": {"fake": FAKE_SERVICE}},
        {FAKE_SERVICE: FAKE_SERVICE_SOURCE},
    )
    return {
        **os.environ,
        "PYTHONPATH": str(site_dir),
        # Beat sends the first heartbeat one interval after it starts.
        "TESSERA_HEARTBEAT_INTERVAL_S": "1",
        "COLUMNS": "200",
    }


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    data_dir: Path
    lines: Lines
    stderr_path: Path


@pytest.fixture
def dev_up(
    tmp_path: Path, stack_env: dict[str, str], tessera_command: Path
) -> Iterator[RunningStack]:
    data_dir = tmp_path / "stack"
    stderr_path = tmp_path / "dev-up.stderr"
    stderr = stderr_path.open("w")
    process = subprocess.Popen(
        [
            str(tessera_command),
            *("dev", "up", "--data-dir", str(data_dir), "--port-offset", str(_free_offset())),
        ],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=stack_env,
    )
    lines = Lines(process.stdout)
    try:
        yield RunningStack(process, data_dir, lines, stderr_path)
    finally:
        if process.poll() is None:  # the test failed half-way: do not leave a stack behind
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOPPED_WITHIN_S)
            except subprocess.TimeoutExpired:
                for child in psutil.Process(process.pid).children(recursive=True):
                    child.kill()
                process.kill()
                process.wait()
        lines.join(5)
        stderr.close()


# The whole stack (etcd, redis, every installed service, worker, beat) starts and stops here.
@pytest.mark.timeout(300)
def test_dev_up_runs_the_stack_reports_health_and_stops_everything_on_sigint(
    dev_up: RunningStack, run_cli: Any, stack_env: dict[str, str]
) -> None:
    process, data_dir, lines = dev_up.process, dev_up.data_dir, dev_up.lines
    # The real services installed in the workspace run beside the fake one.
    installed = sorted(discover_services())
    expected = ["etcd", "redis", "fake", *installed, "worker", "beat"]

    lines.wait_for(f"all {len(expected)} components healthy", HEALTHY_WITHIN_S)
    table = "\n".join(lines.seen)
    for name in expected:
        assert f" {name} " in table

    healthy = run_cli("status", "--json", "--data-dir", str(data_dir), env=stack_env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    document = json.loads(healthy.stdout)
    assert document["healthy"] is True
    assert document["source"] == str(data_dir / MANIFEST_NAME)
    components = document["components"]
    assert {name: c["health"] for name, c in components.items()} == dict.fromkeys(
        expected, "healthy"
    )
    if "registry" in installed:
        _assert_services_registered(run_cli, components["registry"]["endpoint"], installed)

    second = run_cli("dev", "up", "--data-dir", str(data_dir), "--no-services", env=stack_env)
    assert second.returncode == 1
    assert "already runs" in second.stderr

    children = psutil.Process(process.pid).children(recursive=True)
    recorded = {c["pid"] for c in components.values()}
    assert recorded <= {child.pid for child in children}
    # Every service runs on Tessera's gRPC transport (or on the operator's own choice of it).
    for name, value in GRPC_TRANSPORT_ENVIRONMENT.items():
        expected_value = stack_env.get(name, value)
        for service in ("fake", *installed):
            environ = psutil.Process(components[service]["pid"]).environ()
            assert environ.get(name) == expected_value, (service, name)

    # A child that dies is shown failed, with its log, and status says so.
    os.kill(components["beat"]["pid"], signal.SIGKILL)
    failed = lines.wait_for("beat: failed", 10)
    assert "killed by SIGKILL" in failed
    assert str(data_dir / "logs" / "beat.log") in failed
    degraded = run_cli("status", "--json", "--data-dir", str(data_dir), env=stack_env)
    assert degraded.returncode == 1
    assert json.loads(degraded.stdout)["components"]["beat"]["health"] == "failed"

    process.send_signal(signal.SIGINT)
    assert process.wait(STOPPED_WITHIN_S) == 0
    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == []
    assert _stack_processes(data_dir, components["redis"]["endpoint"]) == []
    assert not (data_dir / MANIFEST_NAME).exists()
    # Services first, with SIGTERM so they drain, then the jobs, then Redis and etcd.
    progress = dev_up.stderr_path.read_text()
    steps = ["stopping fake", "stopping worker", "stopping redis", "stopping etcd"]
    assert [progress.index(step) for step in steps] == sorted(progress.index(s) for s in steps)
    fake_log = (data_dir / "logs" / "fake.log").read_text()
    assert "stop requested" in fake_log
    assert "SIGTERM" in fake_log

    # The stack is down: with no stack.json, status falls back to the settings, which point at
    # the ports the stack used.
    down = run_cli(
        "status",
        "--json",
        "--data-dir",
        str(data_dir),
        env={
            **stack_env,
            "TESSERA_ETCD_ENDPOINTS": components["etcd"]["endpoint"],
            "TESSERA_REDIS_URL": components["redis"]["endpoint"],
        },
    )
    assert down.returncode == 1
    document = json.loads(down.stdout)
    assert document["source"] == "settings"
    for name in ("etcd", "redis", "worker", "beat"):
        assert document["components"][name]["health"] == "unhealthy"


def _assert_services_registered(run_cli: Any, registry: str, installed: list[str]) -> None:
    """Every Tessera service of the stack (the registry too) registers itself in the registry."""
    wanted = {f"tessera-{name}" for name in installed}
    listed: set[str] = set()
    deadline = time.monotonic() + REGISTERED_WITHIN_S
    while time.monotonic() < deadline:
        result = run_cli("registry", "ls", "tessera", "--json", "--target", registry)
        assert result.returncode == 0, result.stdout + result.stderr
        services = json.loads(result.stdout).get("services", [])
        listed = {s["service"] for s in services if s.get("eligible") == 1}
        if listed == wanted:
            break
        time.sleep(0.5)
    assert listed == wanted
    table = run_cli("registry", "ls", "--target", registry)
    assert table.returncode == 0, table.stderr
    for service in wanted:
        assert service in table.stdout


def test_sigterm_while_starting_stops_what_started_and_exits_0(
    tmp_path: Path, tessera_command: Path
) -> None:
    data_dir = tmp_path / "stack"
    offset = _free_offset()
    redis_url = f"redis://127.0.0.1:{6379 + offset}/0"
    command = ["dev", "up", "--no-services", "--data-dir", str(data_dir)]
    process = subprocess.Popen(
        [str(tessera_command), *command, "--port-offset", str(offset)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    progress = Lines(process.stderr)
    try:
        progress.wait_for("starting redis", HEALTHY_WITHIN_S)
        started = _stack_processes(data_dir, redis_url)
        assert [p for p in started if p.pid != process.pid]  # etcd at least

        process.send_signal(signal.SIGTERM)

        assert process.wait(STOPPED_WITHIN_S) == 0
        progress.wait_for("stack stopped", 5)
        assert _stack_processes(data_dir, redis_url) == []
        assert not (data_dir / MANIFEST_NAME).exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        progress.join(5)
