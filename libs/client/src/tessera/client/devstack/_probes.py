import asyncio
from dataclasses import dataclass

import aetcd
import grpc
import redis.exceptions
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tessera.core.redis import connect_redis


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """Outcome of one health probe.

    Attributes:
        healthy: Whether the component answered and said it is well.
        detail: Why not, when not healthy (empty otherwise).

    """

    healthy: bool
    detail: str = ""


HEALTHY = ProbeResult(healthy=True)


async def probe_etcd(endpoint: str, timeout_s: float) -> ProbeResult:
    """Ask an etcd member for its status (a real client call) and require an elected leader.

    Args:
        endpoint: ``host:port`` of the client API.
        timeout_s: Seconds allowed for the whole probe.

    Returns:
        Healthy when the member answers and knows its leader.

    """
    host, _, port = endpoint.rpartition(":")
    try:
        async with asyncio.timeout(timeout_s):
            # aetcd takes whole seconds; the asyncio timeout above is the real bound.
            async with aetcd.Client(host, int(port), timeout=max(1, round(timeout_s))) as client:
                status = await client.status()
    except TimeoutError:
        return ProbeResult(False, f"no answer within {timeout_s:g} s")
    except aetcd.ClientError as error:
        return ProbeResult(False, first_line(str(error)))
    if status.leader is None:
        return ProbeResult(False, "no leader")
    return HEALTHY


async def probe_redis(url: str, timeout_s: float) -> ProbeResult:
    """Send PING to Redis.

    Args:
        url: ``redis://`` URL.
        timeout_s: Seconds allowed for the connection and the reply.

    Returns:
        Healthy when Redis answers PONG.

    """
    client = connect_redis(url, timeout_s=timeout_s, retries=0)
    try:
        async with asyncio.timeout(timeout_s):
            await client.ping()
    except TimeoutError:
        return ProbeResult(False, f"no answer within {timeout_s:g} s")
    except redis.exceptions.RedisError as error:
        return ProbeResult(False, first_line(str(error)))
    finally:
        await client.aclose()
    return HEALTHY


async def probe_grpc_health(endpoint: str, timeout_s: float, service: str = "") -> ProbeResult:
    """Call ``grpc.health.v1.Health/Check`` on a gRPC server.

    Args:
        endpoint: ``host:port`` of the server.
        timeout_s: Deadline of the call in seconds.
        service: Service name to check; empty for the server as a whole.

    Returns:
        Healthy when the answer is SERVING.

    """
    async with grpc.aio.insecure_channel(endpoint) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = await stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.aio.AioRpcError as error:
            return ProbeResult(False, f"{error.code().name}: {first_line(error.details() or '')}")
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        return ProbeResult(
            False, health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        )
    return HEALTHY


def first_line(text: str) -> str:
    """Return the first line of an error message, which is the one worth a table cell."""
    return text.strip().splitlines()[0] if text.strip() else "error without message"
