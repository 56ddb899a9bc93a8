import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tessera.core import TesseraSettings
from tessera.core.server import ServiceServer
from tessera.proto.diagnostics.v1 import diagnostics_pb2, diagnostics_pb2_grpc

TOKEN = "t0ken-for-tests"


@pytest.fixture(scope="module")
async def channel():
    async with (
        ServiceServer(TesseraSettings(auth_token=TOKEN), []) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        yield channel


async def _echo(channel, metadata):
    stub = diagnostics_pb2_grpc.DiagnosticsStub(channel)
    return await stub.Echo(diagnostics_pb2.EchoRequest(payload=b"hi"), metadata=metadata, timeout=5)


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "Bearer wrong-token"),),
        (("authorization", TOKEN),),  # no scheme
        (("authorization", f"Basic {TOKEN}"),),
        (("x-token", TOKEN),),
    ],
    ids=["none", "wrong-token", "no-scheme", "basic-scheme", "other-key"],
)
async def test_calls_without_the_bearer_token_are_unauthenticated(channel, metadata):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _echo(channel, metadata)
    assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert TOKEN not in raised.value.details()


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
async def test_calls_with_the_bearer_token_pass(channel, scheme):
    response = await _echo(channel, (("authorization", f"{scheme} {TOKEN}"),))
    assert response.payload == b"hi"


async def test_streaming_calls_need_the_token_too(channel):
    stub = diagnostics_pb2_grpc.DiagnosticsStub(channel)
    call = stub.EchoStream(diagnostics_pb2.EchoStreamRequest(payload=b"p", count=2), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in call:
            pass
    assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_health_checks_need_no_token(channel):
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=5
    )
    assert response.status == health_pb2.HealthCheckResponse.SERVING
