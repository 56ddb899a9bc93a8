"""Prometheus metrics of a gRPC server and the HTTP endpoint that serves them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

# gRPC calls on a healthy server take well under a millisecond to seconds; the Prometheus default
# buckets start at 5 ms and would put every fast call in the first bucket.
LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _MethodSeries:
    """The labelled children of one method's metrics.

    `labels()` takes a lock and validates and joins the label values on every call; looking the
    children up once per method keeps that off the path of each call.
    """

    requests: Counter
    in_flight: Gauge
    duration: Histogram
    errors: dict[grpc.StatusCode, Counter] = field(default_factory=dict)


class GrpcServerMetrics:
    """The per-method metrics of one gRPC server, in a registry of its own.

    Each server owns its registry, so two servers in one process (tests, benchmarks) keep separate
    counts and never collide on metric names. Names follow Prometheus conventions:

    - `tessera_grpc_server_requests_total{service,method}`: calls started.
    - `tessera_grpc_server_errors_total{service,method,code}`: calls that ended with a non-OK code.
    - `tessera_grpc_server_request_duration_seconds{service,method}`: histogram of call durations.
    - `tessera_grpc_server_in_flight{service,method}`: calls running now.

    A request that a stream carries as a message and records with `StreamedCalls` (the lock
    service's Commands) counts as a call of the unary method it stands for; the stream counts as
    a call of its own method besides.

    The registry also holds the process, platform and garbage-collector collectors.
    Thread-safe (prometheus-client metrics are; the per-method cache of labelled children only
    ever maps a method to the children `labels()` returns for it, so a race costs a lookup).

    Args:
        registry: Where to register the metrics; a new registry by default.

    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        self.registry = registry
        labels = ("service", "method")
        self._requests = Counter(
            "tessera_grpc_server_requests",
            "gRPC calls started, by service and method.",
            labels,
            registry=registry,
        )
        self._errors = Counter(
            "tessera_grpc_server_errors",
            "gRPC calls that ended with a non-OK status, by status code.",
            (*labels, "code"),
            registry=registry,
        )
        self._duration = Histogram(
            "tessera_grpc_server_request_duration_seconds",
            "Time from the start of a gRPC call to its last response message or error.",
            labels,
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self._in_flight = Gauge(
            "tessera_grpc_server_in_flight",
            "gRPC calls running now.",
            labels,
            registry=registry,
        )
        self._series: dict[tuple[str, str], _MethodSeries] = {}

    def call_started(self, service: str, method: str) -> None:
        """Count a call that starts now.

        Args:
            service: Full proto service name, e.g. `tessera.registry.v1.Registry`.
            method: Method name, e.g. `Register`.

        """
        series = self._series.get((service, method)) or self._add_series(service, method)
        series.requests.inc()
        series.in_flight.inc()

    def call_finished(
        self, service: str, method: str, code: grpc.StatusCode, duration_s: float
    ) -> None:
        """Record the end of a call that `call_started` counted.

        Args:
            service: Full proto service name.
            method: Method name.
            code: The status the client received.
            duration_s: Seconds from start to end.

        """
        series = self._series.get((service, method)) or self._add_series(service, method)
        series.in_flight.dec()
        series.duration.observe(duration_s)
        if code is not grpc.StatusCode.OK:
            errors = series.errors.get(code)
            if errors is None:
                errors = series.errors[code] = self._errors.labels(service, method, code.name)
            errors.inc()

    def _add_series(self, service: str, method: str) -> _MethodSeries:
        series = _MethodSeries(
            requests=self._requests.labels(service, method),
            in_flight=self._in_flight.labels(service, method),
            duration=self._duration.labels(service, method),
        )
        self._series[(service, method)] = series
        return series


@dataclass
class MetricsEndpoint:
    """A running `/metrics` HTTP server, serving one registry from a daemon thread.

    Attributes:
        port: The port it listens on.

    """

    port: int
    _server: WSGIServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def close(self) -> None:
        """Stop serving and release the port.

        Blocks up to about half a second (the server's poll interval); from async code call it
        through `asyncio.to_thread`.
        """
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def start_metrics_server(
    registry: CollectorRegistry, port: int, host: str = "127.0.0.1"
) -> MetricsEndpoint:
    """Serve `registry` in the Prometheus text format over HTTP, from a daemon thread.

    Args:
        registry: The metrics to serve (for a server, `GrpcServerMetrics.registry`).
        port: The port; 0 picks a free one.
        host: The address to bind.

    Returns:
        The running endpoint; its `port` is the bound port.

    Raises:
        OSError: The address cannot be bound.

    """
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsEndpoint(port=server.server_port, _server=server, _thread=thread)
