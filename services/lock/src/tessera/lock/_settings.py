from __future__ import annotations

from pydantic import Field

from tessera.core import SERVICE_PORTS, Port, TesseraSettings

_PORTS = SERVICE_PORTS["lock"]


class LockSettings(TesseraSettings):
    """Settings of the lock service (`TESSERA_*` environment variables); defaults live here."""

    service_name: str = "tessera-lock"
    port: Port = _PORTS.port
    metrics_port: Port | None = _PORTS.metrics_port
    lock_backend: str = Field(default="etcd", min_length=1)
    """Name of the `tessera.lock_backends` plugin that stores sessions and locks."""
    lock_reap_interval_s: float = Field(default=30.0, gt=0)
    """How often beat sends `tessera.lock.reap` (dead sessions' state, lock-delays over)."""
    lock_stats_interval_s: float = Field(default=30.0, gt=0)
    """How often beat sends `tessera.lock.stats` (counts written to Redis)."""
