from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tessera.client.governance import GovernanceClient
from tessera.core.embedded import EtcdServer, free_port
from tessera.governance import GOVERNANCE_SERVICE


async def test_governance_process_serves_health_and_stops_on_sigterm(
    etcd_server: EtcdServer, name: str
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "TESSERA_PORT": str(port),
        "TESSERA_METRICS_PORT": str(free_port()),
        "TESSERA_ETCD_ENDPOINTS": etcd_server.endpoint,
        "TESSERA_SHUTDOWN_GRACE_S": "2",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tessera.governance", env=env, stdout=asyncio.subprocess.DEVNULL
    )
    target = f"127.0.0.1:{port}"
    try:
        async with grpc.aio.insecure_channel(target) as channel, asyncio.timeout(30):
            health = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service=GOVERNANCE_SERVICE)
            reply = await health.Check(request, wait_for_ready=True)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        async with GovernanceClient.connect(target, timeout_s=10) as gov:
            registration = await gov.push_contract(name, json.dumps({"type": "object"}))
            assert registration.contract.version == 1
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
