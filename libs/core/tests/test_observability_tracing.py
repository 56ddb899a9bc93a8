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
from tessera.core.observability._tracing import _exporter_for
from tessera.core.server import ServiceServer
from tessera.proto.diagnostics.v1 import diagnostics_pb2, diagnostics_pb2_grpc

# Every test module that configures tracing uses this name: the first call in a process fixes it.
SETTINGS = TesseraSettings(service_name="tessera-test")
ECHO = "/tessera.diagnostics.v1.Diagnostics/Echo"


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


async def test_a_failed_call_marks_its_server_span_with_the_status_code(exporter):
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
    (server_span,) = [span for span in spans if span.kind is trace.SpanKind.SERVER]
    code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert server_span.attributes["rpc.grpc.status_code"] == code


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
