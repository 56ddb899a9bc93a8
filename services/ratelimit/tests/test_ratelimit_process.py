import asyncio
import os
import signal
import sys
from pathlib import Path

import grpc
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2 as common_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tessera.core.embedded import EtcdServer, RedisServer, free_port
from tessera.ratelimit import ENVOY_SERVICE, RATE_LIMITER_SERVICE

CONFIGS = Path(__file__).with_name("configs")


def environment(
    etcd: EtcdServer, redis: RedisServer, config_dir: Path, port: int
) -> dict[str, str]:
    return {
        **os.environ,
        "TESSERA_PORT": str(port),
        "TESSERA_METRICS_PORT": str(free_port()),
        "TESSERA_ETCD_ENDPOINTS": etcd.endpoint,
        "TESSERA_REDIS_URL": redis.url,
        "TESSERA_RATELIMIT_CONFIG_DIR": str(config_dir),
        "TESSERA_LOG_FORMAT": "json",
    }


async def wait_serving(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        async with asyncio.timeout(30):
            for service in (ENVOY_SERVICE, RATE_LIMITER_SERVICE):
                while True:
                    try:
                        reply = await health.Check(
                            health_pb2.HealthCheckRequest(service=service), wait_for_ready=True
                        )
                    except grpc.aio.AioRpcError:
                        await asyncio.sleep(0.1)
                        continue
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break


async def test_ratelimit_process_serves_envoy_and_stops_on_sigterm(
    etcd_server: EtcdServer, redis_server: RedisServer
) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tessera.ratelimit",
        env=environment(etcd_server, redis_server, CONFIGS, port),
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_serving(f"127.0.0.1:{port}")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            request = rls_pb2.RateLimitRequest(
                domain="edge_proxy_per_ip",
                descriptors=[
                    common_pb2.RateLimitDescriptor(
                        entries=[
                            common_pb2.RateLimitDescriptor.Entry(
                                key="remote_address", value="50.0.0.5"
                            )
                        ]
                    )
                ],
            )
            response = await rls_pb2_grpc.RateLimitServiceStub(channel).ShouldRateLimit(request)
            assert response.overall_code == rls_pb2.RateLimitResponse.OVER_LIMIT
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_ratelimit_process_refuses_a_bad_config_dir_naming_the_field(
    etcd_server: EtcdServer, redis_server: RedisServer
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tessera.ratelimit",
        env=environment(etcd_server, redis_server, CONFIGS / "bad", free_port()),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(30):
        output, _ = await process.communicate()
    assert process.returncode == 1
    assert b"bad_yaml.yaml" in output
