"""OpenTelemetry tracing: one tracer provider per process and the library instrumentations."""

from __future__ import annotations

import threading

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

from tessera.core._settings import TesseraSettings
from tessera.core.observability._client_tracing import install_client_tracing

_configure_lock = threading.Lock()
_provider: TracerProvider | None = None
_attached_exporters: list[SpanExporter] = []


def configure_tracing(
    settings: TesseraSettings, *, span_exporter: SpanExporter | None = None
) -> TracerProvider:
    """Set up the process's tracer provider and instrument grpc.aio, redis and celery.

    The first call creates the provider (resource `service.name` = `settings.service_name`),
    attaches the exporter chosen by `settings.trace_exporter` behind a batching processor, makes
    the provider the global one and instruments grpc.aio servers and channels created from then
    on, redis clients and celery tasks. Later calls return the same provider: the provider, its
    resource and the settings' exporter are fixed by the first call, as OpenTelemetry allows one
    global provider per process. Thread-safe.

    Args:
        settings: Supplies `service_name`, `trace_exporter` and the exporter endpoints.
        span_exporter: An extra exporter to attach, each one once, behind a processor that exports
            every span as it ends (for tests: pass an `InMemorySpanExporter`).

    Returns:
        The process's tracer provider.

    """
    global _provider
    with _configure_lock:
        if _provider is None:
            provider = TracerProvider(
                resource=Resource.create({SERVICE_NAME: settings.service_name})
            )
            exporter = _exporter_for(settings)
            if exporter is not None:
                provider.add_span_processor(BatchSpanProcessor(exporter))
            trace.set_tracer_provider(provider)
            _instrument_libraries(provider)
            _provider = provider
        if span_exporter is not None and not any(e is span_exporter for e in _attached_exporters):
            _provider.add_span_processor(SimpleSpanProcessor(span_exporter))
            _attached_exporters.append(span_exporter)
        return _provider


def _exporter_for(settings: TesseraSettings) -> SpanExporter | None:
    # The network exporters are imported only when chosen: they pull in sizeable dependencies.
    match settings.trace_exporter:
        case "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter(endpoint=settings.otlp_endpoint)
        case "zipkin":
            from opentelemetry.exporter.zipkin.json import ZipkinExporter

            return ZipkinExporter(endpoint=settings.zipkin_endpoint)
        case "console":
            return ConsoleSpanExporter()
        case "none":
            return None


def _instrument_libraries(provider: TracerProvider) -> None:
    # Imported here: the instrumentations import redis and celery, which a process that never
    # configures tracing (a CLI, a test) need not pay for.
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorServer
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    # grpc.aio servers: the instrumentor wraps grpc.aio.server() so every server made afterwards
    # gets the tracing interceptor first in its chain, and the request's span is current inside the
    # kit's own interceptors and the servicer.
    # The instrumentors' constructors carry no annotations.
    for instrumentor in (
        GrpcAioInstrumentorServer(),  # type: ignore[no-untyped-call]
        RedisInstrumentor(),
        CeleryInstrumentor(),  # type: ignore[no-untyped-call]
    ):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider)
    # grpc.aio channels: Tessera's own interceptor, as OpenTelemetry's does not pass a
    # cancellation on to the RPC (see _client_tracing).
    install_client_tracing(provider)
