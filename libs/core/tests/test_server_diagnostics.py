import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tessera.core import TesseraSettings
from tessera.core.server import MAX_ECHO_COUNT, MAX_ECHO_PAYLOAD_BYTES, ServiceServer
from tessera.proto.diagnostics.v1 import diagnostics_pb2, diagnostics_pb2_grpc


@pytest.fixture(scope="module")
async def stub():
    async with (
        ServiceServer(TesseraSettings(), []) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        yield diagnostics_pb2_grpc.DiagnosticsStub(channel)


def _violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    found = {}
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            found.update((v.field, v.description) for v in bad_request.field_violations)
    return found


async def test_echo_returns_the_payload(stub):
    response = await stub.Echo(diagnostics_pb2.EchoRequest(payload=b"ping"), timeout=5)
    assert response.payload == b"ping"


async def test_echo_accepts_exactly_one_mebibyte(stub):
    payload = b"x" * MAX_ECHO_PAYLOAD_BYTES
    response = await stub.Echo(diagnostics_pb2.EchoRequest(payload=payload), timeout=5)
    assert len(response.payload) == MAX_ECHO_PAYLOAD_BYTES


async def test_echo_rejects_a_payload_over_one_mebibyte_naming_the_field(stub):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Echo(
            diagnostics_pb2.EchoRequest(payload=b"x" * (MAX_ECHO_PAYLOAD_BYTES + 1)), timeout=5
        )
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert _violations(raised.value) == {"payload": "must be at most 1048576 bytes"}


async def test_echo_stream_sends_the_payload_count_times(stub):
    call = stub.EchoStream(diagnostics_pb2.EchoStreamRequest(payload=b"p", count=3), timeout=5)
    assert [response.payload async for response in call] == [b"p", b"p", b"p"]


@pytest.mark.parametrize("count", [0, MAX_ECHO_COUNT + 1])
async def test_echo_stream_rejects_a_count_out_of_range(stub, count):
    call = stub.EchoStream(diagnostics_pb2.EchoStreamRequest(payload=b"p", count=count), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in call:
            pass
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert _violations(raised.value) == {"count": "must be between 1 and 10000"}


async def test_echo_stream_names_every_invalid_field(stub):
    call = stub.EchoStream(
        diagnostics_pb2.EchoStreamRequest(payload=b"x" * (MAX_ECHO_PAYLOAD_BYTES + 1), count=0),
        timeout=5,
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in call:
            pass
    assert set(_violations(raised.value)) == {"payload", "count"}
