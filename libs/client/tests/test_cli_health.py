"""`tessera health`: the container health checks, run as the console script against real servers."""

import asyncio
import json
import os
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from tessera.core import TesseraSettings
from tessera.core.embedded import RedisServer, free_port
from tessera.core.jobs import HEARTBEAT_KEY
from tessera.core.redis import connect_redis
from tessera.testing import ServerFactory, ServiceStarter


async def _tessera(
    command: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    # Async: the server under probe runs on this test's event loop.
    process = await asyncio.create_subprocess_exec(
        str(command),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_health_grpc_exits_0_for_a_serving_server_and_finds_it_from_the_settings(
    running_service: ServiceStarter, tessera_command: Path
) -> None:
    service = await running_service([], TesseraSettings(port=free_port(), metrics_port=None))
    address = service.server.address

    code, out, _ = await _tessera(tessera_command, "health", "grpc", address)
    assert (code, out.strip()) == (0, f"{address}: healthy")

    # As in a container: no argument, the bind address from TESSERA_HOST (a wildcard means
    # loopback) and TESSERA_PORT.
    port = address.rpartition(":")[2]
    code, out, err = await _tessera(
        tessera_command,
        "health",
        "grpc",
        env={"TESSERA_HOST": "0.0.0.0", "TESSERA_PORT": port},
    )
    assert code == 0, err
    assert out.strip() == f"127.0.0.1:{port}: healthy"


async def test_health_grpc_exits_1_for_a_draining_or_absent_server(
    tessera_command: Path,
) -> None:
    # What a Tessera server answers while it drains after SIGTERM.
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        await servicer.enter_graceful_shutdown()
        code, _, err = await _tessera(tessera_command, "health", "grpc", f"127.0.0.1:{port}")
    finally:
        await server.stop(0)
    assert code == 1
    assert "NOT_SERVING" in err

    code, _, err = await _tessera(
        tessera_command, "health", "grpc", f"127.0.0.1:{free_port()}", "--timeout", "0.5"
    )
    assert code == 1
    assert "UNAVAILABLE" in err


async def test_health_heartbeat_needs_a_recent_heartbeat(
    redis_factory: ServerFactory[RedisServer], tessera_command: Path
) -> None:
    redis = redis_factory()
    env = {"TESSERA_REDIS_URL": redis.url}
    code, _, err = await _tessera(tessera_command, "health", "heartbeat", env=env)
    assert code == 1
    assert "no recent heartbeat" in err

    client = connect_redis(redis.url)
    try:
        await client.set(HEARTBEAT_KEY, json.dumps({"worker": "w@h", "at": time.time()}), ex=10)
    finally:
        await client.aclose()
    code, out, err = await _tessera(tessera_command, "health", "heartbeat", env=env)
    assert code == 0, err
    assert "healthy" in out
