import grpc
import pytest
import structlog.testing
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tessera.core import BackendError, NotFoundError, TesseraSettings, ValidationError
from tessera.core.server import INTERNAL_ERROR_MESSAGE, ServiceBinding, ServiceServer

FAULTS = "test.v1.Faults"
SECRET_DETAIL = "password=hunter2 at /srv/internal/state.py"


async def _invalid(request: bytes, context) -> bytes:
    raise ValidationError.for_field("ttl", "must be between 1 and 3600 seconds")


async def _missing(request: bytes, context) -> bytes:
    raise NotFoundError(f"no widget named {request.decode()!r}")


async def _backend_down(request: bytes, context) -> bytes:
    raise BackendError("etcd is unreachable", backend="etcd", retry_after_s=0.5)


async def _crash(request: bytes, context) -> bytes:
    raise RuntimeError(SECRET_DETAIL)


async def _aborts_itself(request: bytes, context) -> bytes:
    await context.abort(grpc.StatusCode.OUT_OF_RANGE, "offset past the end")


async def _ok(request: bytes, context) -> bytes:
    return request


async def _stream_then_invalid(request: bytes, context):
    yield b"first"
    yield b"second"
    raise ValidationError.for_field("cursor", "expired")


async def _stream_crash(request: bytes, context):
    yield b"first"
    raise KeyError(SECRET_DETAIL)


def _faults_binding() -> ServiceBinding:
    unary = {
        name: grpc.unary_unary_rpc_method_handler(behaviour)
        for name, behaviour in {
            "Invalid": _invalid,
            "Missing": _missing,
            "BackendDown": _backend_down,
            "Crash": _crash,
            "AbortsItself": _aborts_itself,
            "Ok": _ok,
        }.items()
    }
    streams = {
        "StreamThenInvalid": grpc.unary_stream_rpc_method_handler(_stream_then_invalid),
        "StreamCrash": grpc.unary_stream_rpc_method_handler(_stream_crash),
    }
    handler = grpc.method_handlers_generic_handler(FAULTS, {**unary, **streams})
    return ServiceBinding(
        FAULTS, handler, lambda servicer, server: server.add_generic_rpc_handlers((servicer,))
    )


@pytest.fixture(scope="module")
async def channel():
    async with (
        ServiceServer(TesseraSettings(), [_faults_binding()]) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        yield channel


async def _fail(channel, method: str, request: bytes = b"") -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await channel.unary_unary(f"/{FAULTS}/{method}")(request, timeout=5)
    return raised.value


async def _fail_stream(channel, method: str) -> tuple[list[bytes], grpc.aio.AioRpcError]:
    received = []

    async def consume() -> None:
        async for message in channel.unary_stream(f"/{FAULTS}/{method}")(b"", timeout=5):
            received.append(message)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await consume()
    return received, raised.value


def _unpacked(status, kind):
    found = []
    for detail in status.details:
        message = kind()
        if detail.Unpack(message):
            found.append(message)
    return found


async def test_validation_error_reaches_the_client_with_field_violations(channel):
    error = await _fail(channel, "Invalid")
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "invalid ttl: must be between 1 and 3600 seconds"
    status = rpc_status.from_call(error)
    (bad_request,) = _unpacked(status, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("ttl", "must be between 1 and 3600 seconds")
    ]


async def test_the_server_keeps_serving_after_an_error(channel):
    for _ in range(3):
        await _fail(channel, "Invalid")
        await _fail(channel, "Crash")
    assert await channel.unary_unary(f"/{FAULTS}/Ok")(b"still here", timeout=5) == b"still here"


async def test_each_error_class_maps_to_its_code(channel):
    missing = await _fail(channel, "Missing", b"gear")
    assert missing.code() is grpc.StatusCode.NOT_FOUND
    assert missing.details() == "no widget named 'gear'"
    (info,) = _unpacked(rpc_status.from_call(missing), error_details_pb2.ErrorInfo)
    assert info.reason == "NotFoundError"


async def test_retryable_backend_errors_carry_retry_info(channel):
    error = await _fail(channel, "BackendDown")
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    status = rpc_status.from_call(error)
    (retry,) = _unpacked(status, error_details_pb2.RetryInfo)
    assert retry.retry_delay.ToMilliseconds() == 500
    (info,) = _unpacked(status, error_details_pb2.ErrorInfo)
    assert (info.reason, dict(info.metadata)) == ("BackendError", {"backend": "etcd"})


async def test_an_unexpected_exception_becomes_internal_without_details(channel):
    with structlog.testing.capture_logs() as logs:
        error = await _fail(channel, "Crash")
    assert error.code() is grpc.StatusCode.INTERNAL
    assert error.details() == INTERNAL_ERROR_MESSAGE
    assert "hunter2" not in str(error.debug_error_string())
    assert rpc_status.from_call(error) is None
    (logged,) = [entry for entry in logs if entry["event"].startswith("rpc failed")]
    assert logged["log_level"] == "error"
    assert logged["error"] == "RuntimeError"
    assert logged["exc_info"] is True  # the traceback goes to the server's log only


async def test_a_status_set_by_the_servicer_passes_through(channel):
    error = await _fail(channel, "AbortsItself")
    assert error.code() is grpc.StatusCode.OUT_OF_RANGE
    assert error.details() == "offset past the end"


async def test_a_stream_that_fails_midway_keeps_its_messages_and_gets_the_status(channel):
    received, error = await _fail_stream(channel, "StreamThenInvalid")
    assert received == [b"first", b"second"]
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    (bad_request,) = _unpacked(rpc_status.from_call(error), error_details_pb2.BadRequest)
    assert bad_request.field_violations[0].field == "cursor"


async def test_a_stream_that_crashes_gets_internal_without_details(channel):
    received, error = await _fail_stream(channel, "StreamCrash")
    assert received == [b"first"]
    assert error.code() is grpc.StatusCode.INTERNAL
    assert error.details() == INTERNAL_ERROR_MESSAGE
