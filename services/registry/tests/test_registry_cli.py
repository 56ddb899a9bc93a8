import asyncio
import json
import sys
from pathlib import Path

from tessera.client.registry import RegistryClient
from tessera.core import TesseraSettings
from tessera.core.embedded import EtcdServer, RedisServer
from tessera.proto.registry.v1 import registry_pb2
from tessera.registry.jobs import stats_once

from .conftest import Replica, instance


async def _tessera(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("tessera")),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_registry_cli_register_ls_drain_resolve_deregister(
    replica: Replica, namespace: str
) -> None:
    target = ("--target", replica.address)
    code, out, err = await _tessera(
        "registry", "register", namespace, "web", "10.1.2.3", "8443", "--id", "c1",
        "--zone", "a", "-m", "version=v2", *target,
    )  # fmt: skip
    assert code == 0, err
    assert out.strip() == "c1"

    code, out, err = await _tessera("registry", "ls", namespace, "web", "--json", *target)
    assert code == 0, err
    [listed] = json.loads(out)["service"]["instances"]
    assert (listed["id"], listed["host"], listed["port"]) == ("c1", "10.1.2.3", 8443)
    assert listed["metadata"] == {"version": "v2"}

    code, out, err = await _tessera("registry", "resolve", namespace, "web", *target)
    assert code == 0, err
    assert out.split() == ["10.1.2.3:8443", "c1"]

    code, out, err = await _tessera("registry", "drain", namespace, "web", "c1", *target)
    assert code == 0, err
    assert "SERVING_STATUS_DRAINING" in out
    code, out, err = await _tessera("registry", "resolve", namespace, "web", *target)
    assert code == 1
    assert "no eligible instance" in err

    code, out, err = await _tessera("registry", "deregister", namespace, "web", "c1", *target)
    assert code == 0, err
    code, out, err = await _tessera("registry", "ls", namespace, "web", "--json", *target)
    assert code == 0, err
    assert json.loads(out)["service"].get("instances", []) == []


async def test_registry_cli_bad_selector_fails_with_the_field(
    replica: Replica, namespace: str
) -> None:
    code, _, err = await _tessera(
        "registry", "ls", namespace, "web", "-l", "zone in (", "--target", replica.address
    )
    assert code == 1
    assert "selector" in err


async def test_registry_cli_stats_shows_what_the_statistics_job_counted(
    client: RegistryClient,
    namespace: str,
    etcd_server: EtcdServer,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    # An empty Redis of its own first: no statistics yet.
    with RedisServer(tmp_path / "empty") as empty:
        code, _, err = await _tessera("registry", "stats", "--redis-url", empty.url)
    assert code == 1
    assert "no registry statistics" in err

    await client.register_many(
        [
            instance(namespace, "web", id="w1", ephemeral=True),
            instance(namespace, "web", id="w2"),
            instance(namespace, "db", id="d1", status=registry_pb2.SERVING_STATUS_DRAINING),
        ]
    )
    settings = TesseraSettings(etcd_endpoints=[etcd_server.endpoint], redis_url=redis_server.url)
    await stats_once(settings)  # what the leader's job runs on a worker

    code, out, err = await _tessera(
        "registry", "stats", namespace, "--redis-url", redis_server.url, "--json"
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["services"] == {
        f"{namespace}/db": {
            "instances": 1, "healthy": 1, "serving": 0, "ephemeral": 0, "persistent": 1,
        },
        f"{namespace}/web": {
            "instances": 2, "healthy": 2, "serving": 2, "ephemeral": 1, "persistent": 1,
        },
    }  # fmt: skip
    assert document["revision"] > 0

    code, out, err = await _tessera("registry", "stats", namespace, "--redis-url", redis_server.url)
    assert code == 0, err
    assert "web" in out
    assert "db" in out
