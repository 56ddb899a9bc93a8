"""Requests carried as messages of a stream, recorded as the unary calls they stand for.

The server kit records one set of metrics and one span per gRPC call, so a stream that carries
many requests (the lock service's Commands: each message an Acquire, TryAcquire or Release)
would show up as one long call. `StreamedCalls` records each such request into the same
per-method metrics and as a span named like its unary call's, a child of the stream's span.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import grpc
import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from tessera.core.observability._metrics import GrpcServerMetrics

#: The metrics of the server whose call runs in this context, or None outside a call or on a
#: server without them. The server kit's metrics interceptor sets it for every call.
SERVER_METRICS: ContextVar[GrpcServerMetrics | None] = ContextVar(
    "tessera_server_metrics", default=None
)

# A proxy until configure_tracing sets the global provider; without one, spans cost a no-op.
_tracer = trace.get_tracer(__name__)

# The codes that mark a server span as an error, as OpenTelemetry's gRPC server interceptor
# does: the server's faults, not the client's (a bad argument is the caller's mistake).
_SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class StreamedCalls:
    """Records the requests that one streaming call carries, each as the unary call it stands for.

    Create one inside the streaming call's servicer: it takes the server's metrics from the
    call's context (`SERVER_METRICS`), and the spans of its requests become children of the span
    current where each `start` runs (the stream's span, in tasks the call started).

    For each request, in the server's metrics: `tessera_grpc_server_requests_total`,
    `_in_flight`, `_request_duration_seconds` and, unless it ends OK,
    `tessera_grpc_server_errors_total{code}`, all labelled with `service` and the request's
    method. Its span is a SERVER span named `/<service>/<method>` with the attributes
    OpenTelemetry's gRPC server interceptor puts on a call's span (`rpc.system`, `rpc.service`,
    `rpc.method`, `rpc.grpc.status_code`) and any the caller adds.

    Concurrency: one event loop, any number of requests at a time.

    Args:
        service: Full proto service name of the requests, e.g. `tessera.lock.v1.Lock`.

    """

    __slots__ = ("_metrics", "_service")

    def __init__(self, service: str) -> None:
        self._service = service
        self._metrics = SERVER_METRICS.get()

    def start(
        self, method: str, attributes: Mapping[str, AttributeValue] | None = None
    ) -> StreamedCall:
        """Count and time one request from now, and make its span current in this context.

        Call it from the task that runs the request: the work it does (backend calls, log lines)
        is then traced under the request's span, and its log lines carry the request's method
        (`method=/<service>/<method>`, as a unary call's do) until `finish`.

        Args:
            method: The unary method the request stands for, e.g. `Acquire`.
            attributes: Extra span attributes known at the start (e.g. the resource's name).

        Returns:
            The running request; `StreamedCall.finish` must be called once, in this context.

        """
        span = _tracer.start_span(
            f"/{self._service}/{method}",
            kind=SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": self._service,
                "rpc.method": method,
                **(attributes or {}),
            },
        )
        if self._metrics is not None:
            self._metrics.call_started(self._service, method)
        return StreamedCall(self._metrics, self._service, method, span)


class StreamedCall:
    """One request of a stream, counted as running until `finish` (see `StreamedCalls.start`)."""

    __slots__ = (
        "_context_token",
        "_log_tokens",
        "_method",
        "_metrics",
        "_service",
        "_span",
        "_started",
    )

    def __init__(
        self, metrics: GrpcServerMetrics | None, service: str, method: str, span: Span
    ) -> None:
        self._metrics = metrics
        self._service = service
        self._method = method
        self._span = span
        # Without a recording span (tracing off, or not sampled) there is nothing to parent:
        # skipping the context switch keeps that case cheap.
        self._context_token = (
            otel_context.attach(trace.set_span_in_context(span)) if span.is_recording() else None
        )
        # Log lines name the request's method, as a unary call's do (not the stream's).
        self._log_tokens: Mapping[str, contextvars.Token[Any]] = (
            structlog.contextvars.bind_contextvars(method=f"/{service}/{method}")
        )
        self._started = time.perf_counter()

    def finish(
        self,
        code: grpc.StatusCode,
        details: str = "",
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        """Record the request's end with the status its unary call would have ended with.

        Not idempotent: call it exactly once, in the context that called `start` (it restores
        the span that was current there).

        Args:
            code: The request's status code (CANCELLED for a request cancelled while it ran).
            details: The status message; with a server fault, the span's error description.
            attributes: Span attributes known at the end (e.g. the outcome).

        """
        duration_s = time.perf_counter() - self._started
        structlog.contextvars.reset_contextvars(**self._log_tokens)
        if self._metrics is not None:
            self._metrics.call_finished(self._service, self._method, code, duration_s)
        if self._context_token is None:
            return
        span = self._span
        # One call: the span takes its lock once per call, not per attribute.
        span.set_attributes({"rpc.grpc.status_code": code.value[0], **(attributes or {})})
        if code in _SERVER_FAULTS:
            span.set_status(Status(StatusCode.ERROR, f"{code}:{details}"))
        otel_context.detach(self._context_token)
        span.end()
