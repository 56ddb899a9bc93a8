"""Counts and times every call in a server's `GrpcServerMetrics`."""

from __future__ import annotations

import contextvars
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType

import grpc

from tessera.core.observability import SERVER_METRICS, GrpcServerMetrics
from tessera.core.server._call_scope import CallScopeInterceptor, RpcMethod, ServicerContext


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """What `MetricsInterceptor` records into.

    Attributes:
        metrics: The server's metrics.

    """

    metrics: GrpcServerMetrics


class MetricsInterceptor(CallScopeInterceptor):
    """Record requests, errors by status code, latency and in-flight calls per method.

    Placed outside the error-mapping interceptor, so it sees the status each client receives,
    including refusals by the auth and drain interceptors. Unary and streaming calls alike; a
    streaming call lasts until its last message. While a call runs, `SERVER_METRICS` holds the
    metrics, so a stream can record the requests it carries with `StreamedCalls`.
    """

    def __init__(self, config: MetricsConfig) -> None:
        super().__init__()
        self._metrics = config.metrics

    def call_scope(
        self, method: RpcMethod, context: ServicerContext
    ) -> AbstractAsyncContextManager[None]:
        """Count and time one call."""
        return _RecordedCall(self._metrics, method, context)


class _RecordedCall:
    """Counts and times one call."""

    __slots__ = ("_context", "_method", "_metrics", "_metrics_token", "_started")

    _metrics_token: contextvars.Token[GrpcServerMetrics | None]  # set by __aenter__

    def __init__(
        self, metrics: GrpcServerMetrics, method: RpcMethod, context: ServicerContext
    ) -> None:
        self._metrics = metrics
        self._method = method
        self._context = context
        self._started = 0.0

    async def __aenter__(self) -> None:
        self._metrics_token = SERVER_METRICS.set(self._metrics)
        self._metrics.call_started(self._method.service, self._method.name)
        self._started = time.perf_counter()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        context = self._context
        if exc is None:
            code = context.code() or grpc.StatusCode.OK
        else:
            # After context.abort the context holds the status sent; without one the call was
            # cancelled (client gone, deadline, server stop) or failed outside the error mapping.
            code = context.code() or (
                grpc.StatusCode.CANCELLED if context.cancelled() else grpc.StatusCode.UNKNOWN
            )
        self._metrics.call_finished(
            self._method.service, self._method.name, code, time.perf_counter() - self._started
        )
        try:  # noqa: SIM105 - contextlib.suppress would cost an object on every call
            SERVER_METRICS.reset(self._metrics_token)
        except ValueError:
            # Run in another context than __aenter__ (the event loop closing an abandoned
            # streaming call in a task of its own): nothing was set in this one.
            pass
