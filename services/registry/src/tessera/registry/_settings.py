from __future__ import annotations

from pydantic import Field

from tessera.core import SERVICE_PORTS, TesseraSettings
from tessera.core._settings import Port

_PORTS = SERVICE_PORTS["registry"]


class RegistrySettings(TesseraSettings):
    """Settings of one registry process (`TESSERA_*` environment variables).

    The liveness timers follow Nacos: a client beats every `heartbeat_interval_s`; an ephemeral
    instance turns unhealthy `unhealthy_after_s` after its last beat and is deleted
    `delete_after_s` after it. The process lease (`lease_ttl_s`) is the reconnect grace: a client
    whose registry replica died reconnects to another one within it and keeps its instances.
    """

    service_name: str = "tessera-registry"
    port: Port = _PORTS.port
    metrics_port: Port | None = _PORTS.metrics_port
    lease_ttl_s: int = Field(default=15, ge=2, le=3600)
    """TTL of the one etcd lease this process attaches its ephemeral instances to."""
    heartbeat_interval_s: float = Field(default=5.0, gt=0)
    """How often clients are told to beat."""
    unhealthy_after_s: float = Field(default=15.0, gt=0)
    """Silence after which an ephemeral instance is marked unhealthy."""
    delete_after_s: float = Field(default=30.0, gt=0)
    """Silence after which an ephemeral instance is deleted (unless its service is protected)."""
    sweep_interval_s: float = Field(default=1.0, gt=0)
    """How often the liveness timers are checked."""
    max_evictions_per_sweep: float = Field(default=0.15, gt=0, le=1)
    """Largest share of a service's instances one sweep may delete (Eureka caps it at 15%)."""
    protect_threshold: float = Field(default=0.0, ge=0, le=1)
    """Protection threshold of services that did not configure one; 0 turns protection off."""
    watch_history: int = Field(default=10_000, ge=1)
    """Changes kept in memory so a Watch can resume from a revision instead of relisting."""
    run_jobs: bool = True
    """Take part in the leader election; the leader sends the background jobs (queue `registry`)."""
    election_interval_s: float = Field(default=2.0, gt=0)
    """How often a replica campaigns for (or confirms) the leadership."""
    probe_interval_s: float = Field(default=10.0, gt=0)
    """How often the leader sends `tessera.registry.probe` (active health checks)."""
    reap_interval_s: float = Field(default=30.0, gt=0)
    """How often the leader sends `tessera.registry.reap`."""
    stats_interval_s: float = Field(default=15.0, gt=0)
    """How often the leader sends `tessera.registry.stats`."""
