"""Settings shared by every Tessera process, read from `TESSERA_*` environment variables."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, Self

import pydantic
from pydantic import Field, FilePath, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tessera.core._errors import ConfigError

ENV_PREFIX = "TESSERA_"

#: A TCP port; 0 asks the operating system for a free one.
Port = Annotated[int, Field(ge=0, le=65535)]


@dataclass(frozen=True, slots=True)
class ServicePorts:
    """The default ports of one service.

    Attributes:
        port: The gRPC port.
        metrics_port: The Prometheus `/metrics` HTTP port.

    """

    port: int
    metrics_port: int


#: Default ports per service, the one place they are written down (see DESIGN.md).
SERVICE_PORTS: Mapping[str, ServicePorts] = MappingProxyType(
    {
        "registry": ServicePorts(port=50051, metrics_port=9101),
        "lock": ServicePorts(port=50052, metrics_port=9102),
        "ratelimit": ServicePorts(port=50053, metrics_port=9103),
        "governance": ServicePorts(port=50054, metrics_port=9104),
    }
)


class TesseraSettings(BaseSettings):
    """Settings of one Tessera process; every default lives here.

    Each field is read from the environment variable `TESSERA_<FIELD>` (case-insensitive), for
    example `TESSERA_PORT=50051`. Keyword arguments given to the constructor win over the
    environment. Instances are immutable; use `model_copy(update=...)` to derive a variant.

    A service's settings subclass takes its ports from `SERVICE_PORTS` and adds its own fields::

        _PORTS = SERVICE_PORTS["registry"]

        class RegistrySettings(TesseraSettings):
            service_name: str = "tessera-registry"
            port: Port = _PORTS.port
            metrics_port: Port | None = _PORTS.metrics_port
            lease_ttl_s: float = 10.0

    Raises:
        pydantic.ValidationError: From the constructor, naming each invalid field. `from_env` raises
            `ConfigError` instead, naming the environment variables.

    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="ignore",
        use_attribute_docstrings=True,
        hide_input_in_errors=True,  # inputs may hold auth_token
    )

    service_name: str = Field(default="tessera", min_length=1)
    """OpenTelemetry `service.name` and the `service` field of log lines."""
    host: str = Field(default="127.0.0.1", min_length=1)
    """Address the gRPC server (and the metrics server) binds to."""
    port: Port = 0
    """gRPC port; 0 picks a free port."""
    metrics_port: Port | None = None
    """Prometheus `/metrics` HTTP port; None runs no metrics server, 0 picks a free port."""
    log_format: Literal["json", "console"] = "json"
    """JSON lines for machines, or a coloured console format for humans."""
    log_level: str = "INFO"
    """Lowest level logged: DEBUG, INFO, WARNING, ERROR or CRITICAL."""
    trace_exporter: Literal["otlp", "zipkin", "console", "none"] = "none"
    """Where finished spans go."""
    otlp_endpoint: str = "http://127.0.0.1:4317"
    """OTLP/gRPC collector endpoint, used when trace_exporter is "otlp"."""
    zipkin_endpoint: str = "http://127.0.0.1:9411/api/v2/spans"
    """Zipkin JSON v2 endpoint, used when trace_exporter is "zipkin"."""
    etcd_endpoints: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1:2379"]
    )
    """etcd members as host:port; the environment value is comma-separated ("h1:2379,h2:2379")."""
    registry_endpoints: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Registry replicas (host:port, comma-separated in the environment) this process registers
    itself with, as an ephemeral instance of `service_name` in namespace `tessera`; empty: none."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis URL for counters and the Celery broker."""
    tls_cert_file: FilePath | None = None
    """Server certificate chain (PEM). With tls_key_file the server speaks TLS only."""
    tls_key_file: FilePath | None = Field(default=None, validate_default=True)
    """Private key (PEM) of tls_cert_file."""
    tls_client_ca_file: FilePath | None = Field(default=None, validate_default=True)
    """CA bundle (PEM) that client certificates must chain to; setting it turns on mutual TLS."""
    auth_token: SecretStr | None = None
    """When set, every call but health checks needs metadata `authorization: Bearer <token>`."""
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    """On SIGTERM, how long in-flight calls may take to finish before they are cancelled."""
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """Largest gRPC message the server sends or receives."""
    busy_poll_us: int = Field(default=0, ge=0, le=10_000)
    """How long (microseconds) a service's event loop keeps polling for I/O after it runs out of
    work, before it sleeps; 0: it sleeps at once. Spends CPU to answer sooner when calls come one
    at a time; slows a backend client that runs threads of its own (ZooKeeper's). See
    docs/benchmarks.md, "Session 7: event loop busy polling"."""

    @field_validator("log_level", mode="after")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in logging.getLevelNamesMapping():
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("etcd_endpoints", "registry_endpoints", mode="before")
    @classmethod
    def _split_endpoints(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("etcd_endpoints", mode="after")
    @classmethod
    def _endpoints_are_host_port(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must list at least one host:port")
        for endpoint in value:
            host, _, port = endpoint.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{endpoint!r} is not host:port")
        return value

    @field_validator("auth_token", mode="after")
    @classmethod
    def _empty_token_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        # Compose files and Helm charts unset variables by setting them empty.
        return None if value is None or not value.get_secret_value() else value

    @field_validator("tls_key_file", mode="after")
    @classmethod
    def _key_comes_with_cert(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if "tls_cert_file" not in info.data:
            return value  # tls_cert_file itself failed; its own error says why
        if (info.data["tls_cert_file"] is None) != (value is None):
            missing = "tls_key_file" if value is None else "tls_cert_file"
            raise ValueError(
                f"tls_cert_file and tls_key_file must be set together ({missing} is not)"
            )
        return value

    @field_validator("tls_client_ca_file", mode="after")
    @classmethod
    def _client_ca_needs_cert(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and info.data.get("tls_cert_file") is None:
            raise ValueError(
                "needs tls_cert_file and tls_key_file: mutual TLS is TLS plus client certificates"
            )
        return value

    @property
    def tls_enabled(self) -> bool:
        """Whether the server speaks TLS (certificate and key are set)."""
        return self.tls_cert_file is not None

    @property
    def mutual_tls(self) -> bool:
        """Whether the server requires client certificates signed by tls_client_ca_file."""
        return self.tls_client_ca_file is not None

    @classmethod
    def from_env(cls, **overrides: Any) -> Self:
        """Read the settings from the environment, for a process entry point.

        Args:
            **overrides: Field values that win over the environment.

        Returns:
            The validated settings.

        Raises:
            ConfigError: Some value is invalid; the message names each environment variable and
                field at fault.

        """
        try:
            return cls(**overrides)
        except pydantic.ValidationError as error:
            problems = "; ".join(_describe(cls, problem) for problem in error.errors())
            raise ConfigError(f"invalid settings: {problems}", source="environment") from error


def _describe(cls: type[TesseraSettings], problem: Any) -> str:
    location = ".".join(str(part) for part in problem["loc"])
    message = str(problem["msg"]).removeprefix("Value error, ")
    if not location:
        return message
    head = str(problem["loc"][0])
    if head in cls.model_fields:
        location = f"{ENV_PREFIX}{head.upper()} ({location})"
    return f"{location}: {message}"
