"""The gRPC server kit every Tessera service runs on.

A service describes its servicers as `ServiceBinding`s and calls
`run(load_settings, open_bindings)` from its `__main__`; `ServiceServer` adds health, reflection,
Diagnostics, metrics, tracing, structured request logs, error mapping, TLS, token auth and graceful
shutdown. The interceptors are exported for reuse and tests; each takes at most one frozen config
dataclass.
"""

from tessera.core.server._auth import TokenAuthConfig, TokenAuthInterceptor
from tessera.core.server._busy_poll import BusyPollSelector, event_loop_factory
from tessera.core.server._call_scope import (
    HEALTH_SERVICE,
    REFLECTION_SERVICES,
    CallScopeInterceptor,
    RpcMethod,
    ServicerContext,
    wrap_handler,
)
from tessera.core.server._diagnostics import (
    DIAGNOSTICS_SERVICE,
    MAX_ECHO_COUNT,
    MAX_ECHO_PAYLOAD_BYTES,
    DiagnosticsServicer,
)
from tessera.core.server._drain import DrainGate
from tessera.core.server._error_mapping import (
    INTERNAL_ERROR_MESSAGE,
    ErrorMappingInterceptor,
    error_status,
)
from tessera.core.server._heap import freeze_startup_heap
from tessera.core.server._metrics_interceptor import MetricsConfig, MetricsInterceptor
from tessera.core.server._request_context import RequestContextInterceptor
from tessera.core.server._serve import run, serve, static_bindings
from tessera.core.server._server import ServiceBinding, ServiceServer
from tessera.core.server._tls import server_credentials

__all__ = [
    "DIAGNOSTICS_SERVICE",
    "HEALTH_SERVICE",
    "INTERNAL_ERROR_MESSAGE",
    "MAX_ECHO_COUNT",
    "MAX_ECHO_PAYLOAD_BYTES",
    "REFLECTION_SERVICES",
    "BusyPollSelector",
    "CallScopeInterceptor",
    "DiagnosticsServicer",
    "DrainGate",
    "ErrorMappingInterceptor",
    "MetricsConfig",
    "MetricsInterceptor",
    "RequestContextInterceptor",
    "RpcMethod",
    "ServiceBinding",
    "ServiceServer",
    "ServicerContext",
    "TokenAuthConfig",
    "TokenAuthInterceptor",
    "error_status",
    "event_loop_factory",
    "freeze_startup_heap",
    "run",
    "serve",
    "server_credentials",
    "static_bindings",
    "wrap_handler",
]
