import asyncio

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.zipkin.json import ZipkinExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tessera.core import TesseraSettings
from tessera.core.observability import configure_tracing
from tessera.core.observability._client_tracing import (
    install_client_tracing,
    uninstall_client_tracing,
)
from tessera.core.observability._tracing import _exporter_for
from tessera.core.server import ServiceServer
from tessera.proto.diagnostics.v1 import diagnostics_pb2, diagnostics_pb2_grpc

# Every test module that configures tracing uses this name: the first call in a process fixes it.
SETTINGS = TesseraSettings(service_name="tessera-test")
ECHO = "/tessera.diagnostics.v1.Diagnostics/Echo"
PROBE = "tessera.test.v1.Probe"
# Local credentials: a secure channel without certificates, on loopback only.
LOCAL_SERVER = grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP)
LOCAL_CHANNEL = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)


@pytest.fixture(scope="module")
def exporter():
    exporter = InMemorySpanExporter()
    configure_tracing(SETTINGS, span_exporter=exporter)
    return exporter


async def _finished_spans(exporter, name: str, count: int):
    for _ in range(100):
        spans = [span for span in exporter.get_finished_spans() if span.name == name]
        if len(spans) >= count:
            return spans
        await asyncio.sleep(0.02)
    raise AssertionError(
        f"expected {count} spans named {name}, got {exporter.get_finished_spans()}"
    )


def test_configure_tracing_returns_the_same_provider_every_time(exporter):
    first = configure_tracing(SETTINGS)
    again = configure_tracing(TesseraSettings(service_name="another"), span_exporter=exporter)
    assert again is first
    assert trace.get_tracer_provider() is first
    assert first.resource.attributes["service.name"] == "tessera-test"


async def test_server_and_client_spans_of_a_call_share_one_trace(exporter):
    exporter.clear()
    async with (
        ServiceServer(SETTINGS, []) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        await diagnostics_pb2_grpc.DiagnosticsStub(channel).Echo(
            diagnostics_pb2.EchoRequest(payload=b"t"), timeout=5
        )
        spans = await _finished_spans(exporter, ECHO, 2)
    by_kind = {span.kind: span for span in spans}
    server_span = by_kind[trace.SpanKind.SERVER]
    client_span = by_kind[trace.SpanKind.CLIENT]
    assert server_span.context.trace_id == client_span.context.trace_id
    assert server_span.parent.span_id == client_span.context.span_id


async def test_a_failed_call_marks_its_server_and_client_spans_with_the_status_code(exporter):
    exporter.clear()
    async with (
        ServiceServer(SETTINGS, []) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError):
            await diagnostics_pb2_grpc.DiagnosticsStub(channel).Echo(
                diagnostics_pb2.EchoRequest(payload=b"x" * (1 << 20 | 1)), timeout=5
            )
        spans = await _finished_spans(exporter, ECHO, 2)
    by_kind = {span.kind: span for span in spans}
    code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert by_kind[trace.SpanKind.SERVER].attributes["rpc.grpc.status_code"] == code
    client_span = by_kind[trace.SpanKind.CLIENT]
    assert client_span.attributes["rpc.grpc.status_code"] == code
    assert client_span.status.status_code is trace.StatusCode.ERROR
    assert client_span.status.description.startswith("INVALID_ARGUMENT")


class _Probe:
    """A bytes-in, bytes-out service with a method of each kind, and two that never answer."""

    def __init__(self) -> None:
        self.hanging = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def unary_unary(self, request, context):
        return request

    async def unary_stream(self, request, context):
        yield request
        yield request

    async def stream_unary(self, requests, context):
        return b"".join([request async for request in requests])

    async def stream_stream(self, requests, context):
        async for request in requests:
            yield request

    async def hang(self) -> None:
        self.hanging.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def hang_unary(self, request, context):
        await self.hang()

    async def hang_stream(self, request, context):
        await self.hang()
        yield request

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            PROBE,
            {
                "UnaryUnary": grpc.unary_unary_rpc_method_handler(self.unary_unary),
                "UnaryStream": grpc.unary_stream_rpc_method_handler(self.unary_stream),
                "StreamUnary": grpc.stream_unary_rpc_method_handler(self.stream_unary),
                "StreamStream": grpc.stream_stream_rpc_method_handler(self.stream_stream),
                "HangUnary": grpc.unary_unary_rpc_method_handler(self.hang_unary),
                "HangStream": grpc.unary_stream_rpc_method_handler(self.hang_stream),
            },
        )


@pytest.fixture
async def probe(exporter):
    """A fresh `_Probe` served by a plain grpc.aio server (traced: configure_tracing ran first)."""
    probe = _Probe()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((probe.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    probe.secure_address = f"127.0.0.1:{server.add_secure_port('127.0.0.1:0', LOCAL_SERVER)}"
    await server.start()
    probe.address = f"127.0.0.1:{port}"
    yield probe
    await server.stop(None)


async def _requests():
    yield b"a"
    yield b"b"


@pytest.mark.parametrize(
    ("method", "call"),
    [
        ("UnaryUnary", lambda channel, m: channel.unary_unary(m)(b"ab", timeout=5)),
        ("UnaryStream", lambda channel, m: _collect(channel.unary_stream(m)(b"ab", timeout=5))),
        ("StreamUnary", lambda channel, m: channel.stream_unary(m)(_requests(), timeout=5)),
        ("StreamStream", lambda channel, m: _collect(channel.stream_stream(m)(_requests()))),
    ],
)
async def test_each_kind_of_call_has_a_client_span_that_parents_the_server_span(
    exporter, probe, method, call
):
    exporter.clear()
    name = f"/{PROBE}/{method}"
    async with grpc.aio.insecure_channel(probe.address) as channel:
        await call(channel, name)
        spans = await _finished_spans(exporter, name, 2)
    by_kind = {span.kind: span for span in spans}
    client_span = by_kind[trace.SpanKind.CLIENT]
    assert by_kind[trace.SpanKind.SERVER].parent.span_id == client_span.context.span_id
    assert dict(client_span.attributes) == {
        "rpc.system": "grpc",
        "rpc.service": PROBE,
        "rpc.method": method,
        "rpc.grpc.status_code": grpc.StatusCode.OK.value[0],
    }
    assert client_span.status.is_ok


async def test_secure_channels_are_traced_too(exporter, probe):
    exporter.clear()
    name = f"/{PROBE}/UnaryUnary"
    async with grpc.aio.secure_channel(probe.secure_address, LOCAL_CHANNEL) as channel:
        await channel.unary_unary(name)(b"x", timeout=5)
        spans = await _finished_spans(exporter, name, 2)
    by_kind = {span.kind: span for span in spans}
    server_span = by_kind[trace.SpanKind.SERVER]
    assert server_span.parent.span_id == by_kind[trace.SpanKind.CLIENT].context.span_id


async def _collect(responses) -> list[bytes]:
    return [response async for response in responses]


@pytest.mark.parametrize(
    ("method", "call"),
    [
        ("HangUnary", lambda channel, m: channel.unary_unary(m)(b"x")),
        ("HangStream", lambda channel, m: _collect(channel.unary_stream(m)(b"x"))),
    ],
)
async def test_cancelling_a_traced_call_cancels_it_on_the_server(exporter, probe, method, call):
    # Regression: OpenTelemetry's aio client interceptor awaited the call's status, so a
    # cancelled caller left the handler running (opentelemetry-python-contrib#3271).
    exporter.clear()
    name = f"/{PROBE}/{method}"
    async with grpc.aio.insecure_channel(probe.address) as channel:
        caller = asyncio.ensure_future(call(channel, name))
        await asyncio.wait_for(probe.hanging.wait(), 5)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await asyncio.wait_for(probe.cancelled.wait(), 1)
        spans = await _finished_spans(exporter, name, 2)
    client_span = {span.kind: span for span in spans}[trace.SpanKind.CLIENT]
    assert client_span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]
    assert client_span.status.status_code is trace.StatusCode.ERROR


async def test_channels_made_after_uninstalling_client_tracing_are_not_traced(exporter, probe):
    exporter.clear()
    name = f"/{PROBE}/UnaryUnary"
    uninstall_client_tracing()
    try:
        async with grpc.aio.insecure_channel(probe.address) as channel:
            await channel.unary_unary(name)(b"x", timeout=5)
            (server_span,) = await _finished_spans(exporter, name, 1)
    finally:
        install_client_tracing(trace.get_tracer_provider())
    assert server_span.kind is trace.SpanKind.SERVER
    assert server_span.parent is None


@pytest.mark.parametrize(
    ("choice", "kind"),
    [("otlp", OTLPSpanExporter), ("zipkin", ZipkinExporter), ("console", ConsoleSpanExporter)],
)
def test_the_settings_choose_the_exporter(choice, kind):
    exporter = _exporter_for(TesseraSettings(trace_exporter=choice))
    try:
        assert isinstance(exporter, kind)
    finally:
        exporter.shutdown()


def test_no_exporter_when_tracing_export_is_off():
    assert _exporter_for(TesseraSettings(trace_exporter="none")) is None
