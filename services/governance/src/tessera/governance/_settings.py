from __future__ import annotations

from pydantic import Field, SecretStr

from tessera.core import SERVICE_PORTS, Port, TesseraSettings
from tessera.governance._compatibility import CompatibilityMode

_PORTS = SERVICE_PORTS["governance"]


class GovernanceSettings(TesseraSettings):
    """Settings of the governance service (`TESSERA_*` variables, see `TesseraSettings`)."""

    service_name: str = "tessera-governance"
    port: Port = _PORTS.port
    metrics_port: Port | None = _PORTS.metrics_port
    max_schema_bytes: int = Field(default=256 * 1024, ge=1024)
    """Largest JSON Schema a contract may hold, in bytes."""
    max_record_bytes: int = Field(default=64 * 1024, ge=64)
    """Largest record EvaluateRecord and EvaluateBatch accept, in bytes of JSON."""
    max_batch_records: int = Field(default=10_000, ge=1)
    """Most records one EvaluateBatch message may carry."""
    max_rules: int = Field(default=200, ge=1)
    """Most rules one rule set may hold."""
    default_rule_engine: str = "cel"
    """Rule engine plugin a rule set uses when it names none."""
    default_compatibility: CompatibilityMode = CompatibilityMode.BACKWARD
    """Compatibility mode of subjects that have none of their own (the Schema Registry default)."""
    scan_chunk_rows: int = Field(default=100_000, ge=1, le=1_000_000)
    """Rows per chunk of a scan when StartScan names none: the unit of progress and memory."""
    scan_sample_rows: int = Field(default=20, ge=0, le=1000)
    """Most failing rows a scan report keeps."""
    scan_connections: dict[str, SecretStr] = Field(default_factory=dict)
    """PostgreSQL connections table scans read through: a JSON object from a name to a DSN
    (`{"warehouse": "postgresql://scanner:secret@db:5432/shop"}`). Requests and stored scans
    name the connection, never the DSN; the service (to look tables up) and the workers (to read
    them) need the same value."""
    scan_schedule_tick_s: float = Field(default=5.0, gt=0)
    """How often beat sends `tessera.governance.schedules`, which starts the due scan schedules;
    a schedule runs at most this late."""
    audit_sample_rate: float = Field(default=0.001, ge=0.0, le=1.0)
    """Fraction of rule decisions logged for audit (logger `tessera.governance.audit`)."""
