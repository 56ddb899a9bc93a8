import io
import json
import logging

import grpc
import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tessera.core import TesseraSettings
from tessera.core.observability import configure_logging, configure_tracing
from tessera.core.server import ServiceServer
from tessera.proto.diagnostics.v1 import diagnostics_pb2, diagnostics_pb2_grpc

# The same service name as the tracing tests: the first configure_tracing in a process fixes it.
SETTINGS = TesseraSettings(service_name="tessera-test")


@pytest.fixture
def stream():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    yield stream
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_lines_logged_inside_a_request_carry_its_trace_and_request_context(stream):
    exporter = InMemorySpanExporter()
    configure_tracing(SETTINGS, span_exporter=exporter)
    configure_logging(SETTINGS, stream=stream)
    async with (
        ServiceServer(SETTINGS, []) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError):
            await diagnostics_pb2_grpc.DiagnosticsStub(channel).Echo(
                diagnostics_pb2.EchoRequest(payload=b"x" * (1 << 20 | 1)), timeout=5
            )
    (line,) = [line for line in _lines(stream) if line["event"] == "rpc failed"]
    (server_span,) = [
        span for span in exporter.get_finished_spans() if span.kind is trace.SpanKind.SERVER
    ]
    assert line["trace_id"] == trace.format_trace_id(server_span.context.trace_id)
    assert line["span_id"] == trace.format_span_id(server_span.context.span_id)
    assert line["method"] == "/tessera.diagnostics.v1.Diagnostics/Echo"
    assert line["peer"].startswith("ipv4:127.0.0.1:")
    assert line["code"] == "INVALID_ARGUMENT"
    assert line["service"] == "tessera-test"
    assert line["level"] == "info"
    started = next(line for line in _lines(stream) if line["event"] == "server started")
    assert "trace_id" not in started  # outside any span


def test_stdlib_logging_is_rendered_as_json_with_the_current_span(stream):
    configure_tracing(SETTINGS)
    configure_logging(SETTINGS, stream=stream)
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        logging.getLogger("tessera.test.stdlib").warning(
            "disk %s", "full", extra={"volume": "/data"}
        )
    (line,) = _lines(stream)
    assert line["event"] == "disk full"
    assert line["level"] == "warning"
    assert line["logger"] == "tessera.test.stdlib"
    assert line["volume"] == "/data"
    assert line["timestamp"].endswith("Z")
    assert line["trace_id"] == trace.format_trace_id(span.get_span_context().trace_id)
    assert line["span_id"] == trace.format_span_id(span.get_span_context().span_id)


def test_structlog_events_keep_their_fields_and_exceptions(stream):
    configure_logging(SETTINGS, stream=stream)
    log = structlog.get_logger("tessera.test.structlog")
    log.info("lease granted", lease_id=7)
    try:
        raise KeyError("boom")
    except KeyError:
        log.exception("lease lost")
    granted, lost = _lines(stream)
    assert (granted["event"], granted["lease_id"], granted["level"]) == ("lease granted", 7, "info")
    assert lost["level"] == "error"
    assert lost["exception"][0]["exc_type"] == "KeyError"


def test_configuring_twice_replaces_instead_of_duplicating(stream):
    configure_logging(SETTINGS, stream=io.StringIO())
    configure_logging(SETTINGS.model_copy(update={"log_level": "WARNING"}), stream=stream)
    log = structlog.get_logger("tessera.test.twice")
    log.info("filtered out")
    log.warning("kept")
    assert [line["event"] for line in _lines(stream)] == ["kept"]


def test_console_format_is_for_humans(stream):
    configure_logging(SETTINGS.model_copy(update={"log_format": "console"}), stream=stream)
    structlog.get_logger("tessera.test.console").info("hello operator", port=50051)
    text = stream.getvalue()
    assert "hello operator" in text
    assert "port" in text
    assert "50051" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_console_format_writes_no_colour_codes_to_a_file(stream):
    configure_logging(SETTINGS.model_copy(update={"log_format": "console"}), stream=stream)
    structlog.get_logger("tessera.test.console").warning("to a log file", port=50051)
    assert "\x1b[" not in stream.getvalue()
