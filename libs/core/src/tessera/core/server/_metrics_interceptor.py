"""Counts and times every call in a server's `GrpcServerMetrics`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import grpc

from tessera.core.observability import GrpcServerMetrics
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
    streaming call lasts until its last message.
    """

    def __init__(self, config: MetricsConfig) -> None:
        super().__init__()
        self._metrics = config.metrics

    def call_scope(
        self, method: RpcMethod, context: ServicerContext
    ) -> AbstractAsyncContextManager[None]:
        """Count and time one call."""
        return self._recorded(method, context)

    @asynccontextmanager
    async def _recorded(self, method: RpcMethod, context: ServicerContext) -> AsyncIterator[None]:
        self._metrics.call_started(method.service, method.name)
        started = time.perf_counter()
        code = grpc.StatusCode.UNKNOWN
        try:
            yield
            code = context.code() or grpc.StatusCode.OK
        except BaseException:
            # After context.abort the context holds the status sent; without one the call was
            # cancelled (client gone, deadline, server stop) or failed outside the error mapping.
            code = context.code() or (
                grpc.StatusCode.CANCELLED if context.cancelled() else grpc.StatusCode.UNKNOWN
            )
            raise
        finally:
            self._metrics.call_finished(
                method.service, method.name, code, time.perf_counter() - started
            )
