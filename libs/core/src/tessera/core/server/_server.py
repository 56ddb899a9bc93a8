"""The gRPC server every Tessera service runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tessera.core._errors import ConfigError, FailedPreconditionError
from tessera.core._settings import TesseraSettings
from tessera.core.observability import GrpcServerMetrics, MetricsEndpoint, start_metrics_server
from tessera.core.server._auth import TokenAuthConfig, TokenAuthInterceptor
from tessera.core.server._call_scope import HEALTH_SERVICE, REFLECTION_SERVICES
from tessera.core.server._diagnostics import DIAGNOSTICS_SERVICE, DiagnosticsServicer
from tessera.core.server._drain import DrainGate
from tessera.core.server._error_mapping import ErrorMappingInterceptor
from tessera.core.server._metrics_interceptor import MetricsConfig, MetricsInterceptor
from tessera.core.server._request_context import RequestContextInterceptor
from tessera.core.server._tls import server_credentials
from tessera.proto.diagnostics.v1 import diagnostics_pb2_grpc

_log = structlog.get_logger("tessera.core.server")

# After the drain, calls that just finished still need a moment to flush their last messages;
# anything left then (health watches, reflection streams) is cancelled.
_FLUSH_GRACE_S = 1.0


@dataclass(frozen=True, slots=True)
class ServiceBinding:
    """One gRPC service a server runs.

    Attributes:
        name: Full proto service name, e.g. `"tessera.registry.v1.Registry"`; health and
            reflection report it.
        servicer: The servicer instance; its methods must be async.
        add_to_server: The generated `add_<Service>Servicer_to_server` function.

    """

    name: str
    servicer: object
    add_to_server: Callable[[Any, grpc.aio.Server], None]


class ServiceServer:
    """A grpc.aio server with health, reflection, diagnostics, metrics, TLS and graceful stop.

    Besides the bindings it serves `grpc.health.v1.Health` (SERVING for each binding, for
    Diagnostics and overall under `""` while running), server reflection (listing every
    service) and `tessera.diagnostics.v1.Diagnostics`. Every call passes, outermost first:
    OpenTelemetry tracing (once `configure_tracing` ran), metrics, structlog request context,
    error mapping, the drain gate and, when `settings.auth_token` is set, token authentication.

    Use from one event loop. Also an async context manager: `async with ServiceServer(...) as s:`
    starts it and stops it on exit.

    Args:
        settings: Address, TLS, auth, metrics port, message size limit and shutdown grace.
        bindings: The services to run; their names must be distinct.

    Raises:
        ConfigError: Two bindings share a name, or one uses a name the kit reserves.

    """

    def __init__(self, settings: TesseraSettings, bindings: Sequence[ServiceBinding]) -> None:
        builtin = {DIAGNOSTICS_SERVICE, HEALTH_SERVICE, *REFLECTION_SERVICES}
        seen: set[str] = set()
        for binding in bindings:
            if binding.name in builtin:
                raise ConfigError(
                    f"service {binding.name!r} is built into the server kit", source="bindings"
                )
            if binding.name in seen:
                raise ConfigError(f"service {binding.name!r} is bound twice", source="bindings")
            seen.add(binding.name)
        self._settings = settings
        self._bindings = (
            *bindings,
            ServiceBinding(
                DIAGNOSTICS_SERVICE,
                DiagnosticsServicer(),
                diagnostics_pb2_grpc.add_DiagnosticsServicer_to_server,
            ),
        )
        self.metrics = GrpcServerMetrics()
        """The server's metrics, in a registry of its own."""
        self._health = health.aio.HealthServicer()
        self._drain = DrainGate(exempt_services=frozenset({HEALTH_SERVICE, *REFLECTION_SERVICES}))
        self._server: grpc.aio.Server | None = None
        self._port: int | None = None
        self._metrics_endpoint: MetricsEndpoint | None = None
        self._stopping: asyncio.Task[None] | None = None

    @property
    def service_names(self) -> tuple[str, ...]:
        """Full names of the services with a health status: the bindings and Diagnostics."""
        return tuple(binding.name for binding in self._bindings)

    @property
    def port(self) -> int:
        """The bound gRPC port.

        Raises:
            FailedPreconditionError: The server has not started.

        """
        if self._port is None:
            raise FailedPreconditionError("the server has not started")
        return self._port

    @property
    def address(self) -> str:
        """`host:port` clients can dial (IPv6 hosts in brackets)."""
        return _join_host_port(self._settings.host, self.port)

    @property
    def metrics_port(self) -> int | None:
        """The bound `/metrics` HTTP port, or None when no metrics server runs."""
        return None if self._metrics_endpoint is None else self._metrics_endpoint.port

    async def start(self) -> None:
        """Bind, start serving and mark every service SERVING.

        Raises:
            FailedPreconditionError: The server was started before.
            ConfigError: The address cannot be bound or a TLS file cannot be read.
            OSError: The metrics port cannot be bound.

        """
        if self._server is not None:
            raise FailedPreconditionError("the server was started before")
        settings = self._settings
        credentials = await asyncio.to_thread(server_credentials, settings)
        interceptors: list[grpc.aio.ServerInterceptor] = [
            MetricsInterceptor(MetricsConfig(self.metrics)),
            RequestContextInterceptor(),
            ErrorMappingInterceptor(),
            self._drain,
        ]
        if settings.auth_token is not None:
            interceptors.append(TokenAuthInterceptor(TokenAuthConfig(settings.auth_token)))
        # Looked up at call time on purpose: configure_tracing instruments grpc.aio.server.
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                ("grpc.max_send_message_length", settings.max_message_bytes),
                # gRPC shares ports by default: a second server on a busy port would start
                # "successfully" and steal part of the traffic.
                ("grpc.so_reuseport", 0),
            ],
        )
        for binding in self._bindings:
            binding.add_to_server(binding.servicer, server)
            await self._health.set(binding.name, health_pb2.HealthCheckResponse.SERVING)
        await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (*self.service_names, HEALTH_SERVICE, reflection.SERVICE_NAME), server
        )
        try:
            port = self._bind(server, credentials)
            if settings.metrics_port is not None:
                self._metrics_endpoint = await asyncio.to_thread(
                    start_metrics_server,
                    self.metrics.registry,
                    settings.metrics_port,
                    settings.host,
                )
            await server.start()
        except BaseException:
            # A server that was created must be stopped, or it leaks its completion queue.
            await server.stop(None)
            await self._close_metrics_endpoint()
            raise
        self._server, self._port = server, port
        _log.info(
            "server started",
            address=self.address,
            metrics_port=self.metrics_port,
            tls=settings.tls_enabled,
            mutual_tls=settings.mutual_tls,
            services=list(self.service_names),
        )

    async def stop(self, grace: float | None = None) -> None:
        """Stop gracefully: NOT_SERVING, refuse new calls, drain, then stop the server.

        Health turns NOT_SERVING for every service at once, and stays answerable while running
        calls finish; new calls get UNAVAILABLE. Once the running calls are done, or `grace`
        ran out, the gRPC server stops (cancelling what is left) and the metrics server closes.
        Concurrent and repeated calls wait for the same shutdown; a server that never started
        has nothing to stop.

        Args:
            grace: Seconds running calls may take; `settings.shutdown_grace_s` by default.

        """
        if self._server is None:
            return
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(
                self._shutdown(
                    self._server, self._settings.shutdown_grace_s if grace is None else grace
                )
            )
        await asyncio.shield(self._stopping)

    async def wait_for_termination(self) -> None:
        """Return once the server has stopped.

        Raises:
            FailedPreconditionError: The server has not started.

        """
        if self._server is None:
            raise FailedPreconditionError("the server has not started")
        await self._server.wait_for_termination()
        if self._stopping is not None:
            await asyncio.shield(self._stopping)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def _bind(self, server: grpc.aio.Server, credentials: grpc.ServerCredentials | None) -> int:
        address = _join_host_port(self._settings.host, self._settings.port)
        try:
            if credentials is None:
                return server.add_insecure_port(address)
            return server.add_secure_port(address, credentials)
        except RuntimeError as error:
            raise ConfigError(f"cannot listen on {address}: {error}", source="port") from error

    async def _shutdown(self, server: grpc.aio.Server, grace: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        _log.info("server draining", running_calls=self._drain.running, grace_s=grace)
        await self._health.enter_graceful_shutdown()
        self._drain.close()
        try:
            async with asyncio.timeout(grace):
                await self._drain.wait_idle()
        except TimeoutError:
            _log.warning(
                "grace period over; cancelling running calls", running_calls=self._drain.running
            )
        await server.stop(min(max(deadline - loop.time(), 0.0), _FLUSH_GRACE_S))
        await self._close_metrics_endpoint()
        _log.info("server stopped", address=self.address)

    async def _close_metrics_endpoint(self) -> None:
        endpoint, self._metrics_endpoint = self._metrics_endpoint, None
        if endpoint is not None:
            await asyncio.to_thread(endpoint.close)


def _join_host_port(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"
