from __future__ import annotations

import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tessera.core.plugins import CheckResult, HealthStatus
from tessera.health_checks._target import host_port


class GrpcCheck:
    """`grpc.health.v1.Health/Check` on `host:port[/service]` (`grpc`).

    Passing when the server answers SERVING for the service (the whole server when none is
    given); CRITICAL for any other answer, an error status, or no answer within the timeout.
    """

    async def check(self, target: str, timeout_s: float) -> CheckResult:
        """Ask the server for the service's health once, on a fresh channel.

        Raises:
            ValidationError: `target` is not `host:port[/service]`.

        """
        address, _, service = target.partition("/")
        host, port = host_port(address)
        started = time.perf_counter()
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        async with grpc.aio.insecure_channel(authority) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                reply = await stub.Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
                )
            except grpc.aio.AioRpcError as error:
                detail = f"{error.code().name}: {error.details() or 'no detail'}"
                return CheckResult(HealthStatus.CRITICAL, detail, time.perf_counter() - started)
        latency = time.perf_counter() - started
        if reply.status == health_pb2.HealthCheckResponse.SERVING:
            return CheckResult(HealthStatus.PASSING, latency_s=latency)
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return CheckResult(HealthStatus.CRITICAL, status, latency)
