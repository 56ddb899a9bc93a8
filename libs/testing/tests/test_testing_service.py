import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tessera.core import TesseraSettings
from tessera.proto.diagnostics.v1 import diagnostics_pb2, diagnostics_pb2_grpc
from tessera.testing import ServiceStarter, serve_in_process


async def test_serve_in_process_answers_on_a_connected_channel_until_exit() -> None:
    async with serve_in_process([]) as service:
        stub = diagnostics_pb2_grpc.DiagnosticsStub(service.channel)
        reply = await stub.Echo(diagnostics_pb2.EchoRequest(payload=b"ping"), timeout=5)
        assert reply.payload == b"ping"
        assert service.server.port > 0
        address = service.server.address

    async with grpc.aio.insecure_channel(address) as channel:
        stub = diagnostics_pb2_grpc.DiagnosticsStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Echo(diagnostics_pb2.EchoRequest(payload=b"ping"), timeout=1)
    assert raised.value.code() in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


async def test_running_service_fixture_serves_with_the_given_settings(
    running_service: ServiceStarter,
) -> None:
    service = await running_service([], TesseraSettings(port=0, service_name="fixture-test"))
    other = await running_service([])

    health = health_pb2_grpc.HealthStub(service.channel)
    status = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    stream = diagnostics_pb2_grpc.DiagnosticsStub(other.channel).EchoStream(
        diagnostics_pb2.EchoStreamRequest(payload=b"x", count=3), timeout=5
    )

    assert status.status == health_pb2.HealthCheckResponse.SERVING
    assert [reply.payload async for reply in stream] == [b"x", b"x", b"x"]
    assert service.server.port != other.server.port
