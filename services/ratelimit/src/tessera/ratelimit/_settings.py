from __future__ import annotations

from pathlib import Path

from pydantic import Field

from tessera.core import SERVICE_PORTS, Port, TesseraSettings

_PORTS = SERVICE_PORTS["ratelimit"]


class RateLimitSettings(TesseraSettings):
    """Settings of the rate-limit service (`TESSERA_*` environment variables)."""

    service_name: str = "tessera-ratelimit"
    port: Port = _PORTS.port
    metrics_port: Port | None = _PORTS.metrics_port
    ratelimit_config_dir: Path | None = None
    """Directory of domain YAML files loaded at start-up; etcd's versions override them."""
    ratelimit_redis_timeout_s: float = Field(default=0.25, gt=0)
    """Connect and reply timeout of Redis calls; a reply this late means Redis is in trouble."""
    ratelimit_circuit_open_s: float = Field(default=0.25, gt=0)
    """How long the failure policy answers without trying Redis after a Redis failure."""
    ratelimit_local_cache_size: int = Field(default=100_000, ge=0)
    """Keys this replica remembers as over their limit until their reset (0: no local cache)."""
    ratelimit_adaptive_refresh_s: float = Field(default=0.5, gt=0)
    """How long a replica trusts an adaptive limit it read before reading it again."""
    ratelimit_usage_flush_s: float = Field(default=5.0, gt=0)
    """How often a replica adds its decision counts to Redis's per-minute usage buckets."""
