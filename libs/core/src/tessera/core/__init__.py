"""Tessera core: the error tree, settings, and (in subpackages) observability and the server kit.

Subpackages: `tessera.core.observability` (logging, tracing, metrics), `tessera.core.server` (the
gRPC server kit), and the etcd, redis, plugin, job and embedded-server modules.
"""

from tessera.core._errors import (
    ERROR_DOMAIN,
    AbortedError,
    AlreadyExistsError,
    BackendError,
    ConfigError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    NotFoundError,
    PermissionDeniedError,
    PluginError,
    ResourceExhaustedError,
    TesseraError,
    UnauthenticatedError,
    UnavailableError,
    ValidationError,
)
from tessera.core._grpc_transport import GRPC_TRANSPORT_ENVIRONMENT, grpc_transport_environment
from tessera.core._settings import ENV_PREFIX, SERVICE_PORTS, Port, ServicePorts, TesseraSettings

__all__ = [
    "ENV_PREFIX",
    "ERROR_DOMAIN",
    "GRPC_TRANSPORT_ENVIRONMENT",
    "SERVICE_PORTS",
    "AbortedError",
    "AlreadyExistsError",
    "BackendError",
    "ConfigError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "FieldViolation",
    "NotFoundError",
    "PermissionDeniedError",
    "PluginError",
    "Port",
    "ResourceExhaustedError",
    "ServicePorts",
    "TesseraError",
    "TesseraSettings",
    "UnauthenticatedError",
    "UnavailableError",
    "ValidationError",
    "grpc_transport_environment",
]
