import json
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

from tessera.client.devstack import (
    MANIFEST_NAME,
    Component,
    ComponentKind,
    StackManifest,
)
from tessera.core.embedded import free_ports


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_status_of_a_stack_that_died_reports_failed_processes_and_exits_1(
    tmp_path: Path, run_cli: Any
) -> None:
    etcd_port, redis_port, service_port = free_ports(3)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    StackManifest(
        supervisor_pid=_dead_pid(),
        etcd_endpoints=(f"127.0.0.1:{etcd_port}",),
        redis_url=redis_url,
        components=(
            Component(
                name="etcd",
                kind=ComponentKind.ETCD,
                endpoint=f"127.0.0.1:{etcd_port}",
                pid=_dead_pid(),
                log=tmp_path / "etcd.log",
            ),
            Component(name="redis", kind=ComponentKind.REDIS, endpoint=redis_url),
            Component(
                name="registry", kind=ComponentKind.SERVICE, endpoint=f"127.0.0.1:{service_port}"
            ),
            Component(name="worker", kind=ComponentKind.WORKER, endpoint=redis_url),
        ),
    ).write(tmp_path)

    result = run_cli("status", "--json", "--data-dir", str(tmp_path), "--timeout", "1")

    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert document["healthy"] is False
    assert document["source"] == str(tmp_path / MANIFEST_NAME)
    components = document["components"]
    assert components["etcd"]["health"] == "failed"
    assert "is gone" in components["etcd"]["detail"]
    assert components["etcd"]["log"] == str(tmp_path / "etcd.log")
    for name in ("redis", "registry", "worker"):
        assert components[name]["health"] == "unhealthy"
        assert components[name]["detail"]
    assert "UNAVAILABLE" in components["registry"]["detail"]


def test_status_table_lists_every_component(tmp_path: Path, run_cli: Any) -> None:
    etcd_port, redis_port = free_ports(2)

    result = run_cli(
        "status",
        "--data-dir",
        str(tmp_path),
        "--timeout",
        "1",
        env={
            "TESSERA_ETCD_ENDPOINTS": f"127.0.0.1:{etcd_port}",
            "TESSERA_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        },
    )

    assert result.returncode == 1
    rows = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("│")}
    assert {"etcd", "redis", "worker", "beat"} <= set(rows)
    assert "unhealthy" in rows["etcd"]
    assert f"127.0.0.1:{etcd_port}" in rows["etcd"]


def test_unreadable_stack_json_is_an_error_without_traceback(tmp_path: Path, run_cli: Any) -> None:
    (tmp_path / MANIFEST_NAME).write_text("not json", encoding="utf-8")

    result = run_cli("status", "--data-dir", str(tmp_path))

    assert result.returncode == 1
    assert "is not a valid stack manifest" in result.stderr
    assert "Traceback" not in result.stderr


def test_dev_up_refuses_a_taken_port_and_starts_nothing(tmp_path: Path, run_cli: Any) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]

        result = run_cli(
            "dev", "up", "--no-services", "--data-dir", str(tmp_path), "--etcd-port", str(taken)
        )

    assert result.returncode == 1
    assert f"etcd {taken}" in result.stderr
    assert "--port-offset" in result.stderr
    assert not (tmp_path / "etcd").exists()
    assert not (tmp_path / MANIFEST_NAME).exists()


def test_version_prints_the_installed_version(run_cli: Any) -> None:
    result = run_cli("version")

    assert result.returncode == 0
    assert result.stdout.strip() == f"tessera {version('tessera-client')}"
