"""Observability for Tessera processes: structured logs, OpenTelemetry traces, Prometheus metrics.

A process calls `configure_logging` and `configure_tracing` once at start (the server kit's
`serve` does); each gRPC server owns a `GrpcServerMetrics` and may serve it with
`start_metrics_server`. A stream that carries requests as messages records each one as the
unary call it stands for with `StreamedCalls`.
"""

from tessera.core.observability._logging import add_trace_context, configure_logging
from tessera.core.observability._metrics import (
    LATENCY_BUCKETS_S,
    GrpcServerMetrics,
    MetricsEndpoint,
    start_metrics_server,
)
from tessera.core.observability._streamed_calls import SERVER_METRICS, StreamedCall, StreamedCalls
from tessera.core.observability._tracing import configure_tracing

__all__ = [
    "LATENCY_BUCKETS_S",
    "SERVER_METRICS",
    "GrpcServerMetrics",
    "MetricsEndpoint",
    "StreamedCall",
    "StreamedCalls",
    "add_trace_context",
    "configure_logging",
    "configure_tracing",
    "start_metrics_server",
]
