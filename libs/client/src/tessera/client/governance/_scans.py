from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tessera.core import FailedPreconditionError
from tessera.proto.governance.v1 import rules_pb2, scans_pb2

ScanState = Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED"]


class ScanFailedError(FailedPreconditionError):
    """A scan ended FAILED (its dataset could not be read); the message says why.

    Attributes:
        scan: The failed scan.

    """

    def __init__(self, scan: Scan) -> None:
        super().__init__(f"scan {scan.scan_id} failed: {scan.error}")
        self.scan = scan


@dataclass(frozen=True, slots=True)
class FieldReport:
    """Counts of one field: nulls, missing, invalid and duplicate values."""

    field: str
    nulls: int
    missing: int
    invalid: int
    duplicates: int
    required: bool


@dataclass(frozen=True, slots=True)
class RuleReport:
    """Rows a rule failed on, or could not be evaluated on."""

    rule: str
    failed: int
    errored: int
    severity: str
    mode: str


@dataclass(frozen=True, slots=True)
class ReferenceReport:
    """Referential violations of one relationship (and repeats, for one-to-one)."""

    relationship: str
    child_fields: tuple[str, ...]
    parent_entity: str
    violations: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class Freshness:
    """The latest timestamp of a field (RFC 3339) and whether it is within the SLA."""

    field: str
    latest: str
    age_s: float
    sla_s: float
    fresh: bool


@dataclass(frozen=True, slots=True)
class SampleRow:
    """A failing row: its number, the row as JSON, and what is wrong with it."""

    row: int
    record_json: str
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ScanReport:
    """The outcome of a scan (see scans.proto `ScanReport`)."""

    rows: int
    failing_rows: int
    fields: tuple[FieldReport, ...]
    rules: tuple[RuleReport, ...]
    references: tuple[ReferenceReport, ...]
    freshness: Freshness | None
    samples: tuple[SampleRow, ...]
    duration_s: float

    @classmethod
    def from_proto(cls, message: scans_pb2.ScanReport) -> ScanReport:
        """Copy a `tessera.governance.v1.ScanReport`."""
        freshness = message.freshness
        return cls(
            rows=message.rows,
            failing_rows=message.failing_rows,
            fields=tuple(
                FieldReport(f.field, f.nulls, f.missing, f.invalid, f.duplicates, f.required)
                for f in message.fields
            ),
            rules=tuple(
                RuleReport(
                    r.rule,
                    r.failed,
                    r.errored,
                    rules_pb2.Severity.Name(r.severity),
                    rules_pb2.RuleMode.Name(r.mode),
                )
                for r in message.rules
            ),
            references=tuple(
                ReferenceReport(
                    r.relationship,
                    tuple(r.child_fields),
                    r.parent_entity,
                    r.violations,
                    r.duplicates,
                )
                for r in message.references
            ),
            freshness=Freshness(
                freshness.field, freshness.latest, freshness.age_s, freshness.sla_s, freshness.fresh
            )
            if message.HasField("freshness")
            else None,
            samples=tuple(
                SampleRow(s.row, s.record_json, tuple(s.problems)) for s in message.samples
            ),
            duration_s=message.duration_s,
        )


@dataclass(frozen=True, slots=True)
class Scan:
    """A scan: its state, progress and, once SUCCEEDED, its report."""

    scan_id: str
    state: ScanState
    rows_done: int
    attempt: int
    error: str
    subject: str
    version: int
    rule_set: str
    rule_set_version: int
    dataset: str
    created_at: float
    updated_at: float
    report: ScanReport | None
    resumed_from_row: int = 0
    """Rows the current attempt took from an earlier attempt's checkpoint (0: read them all)."""
    schedule: str = ""
    """The schedule that started the scan ("" when `start_scan` did)."""

    @property
    def finished(self) -> bool:
        """Whether the scan SUCCEEDED or FAILED."""
        return self.state in ("SUCCEEDED", "FAILED")

    @classmethod
    def from_proto(cls, message: scans_pb2.Scan) -> Scan:
        """Copy a `tessera.governance.v1.Scan`."""
        state = scans_pb2.ScanState.Name(message.state).removeprefix("SCAN_")
        return cls(
            scan_id=message.scan_id,
            state=state,  # type: ignore[arg-type]  # the proto enum's names, less the prefix
            rows_done=message.rows_done,
            attempt=message.attempt,
            error=message.error,
            subject=message.subject,
            version=message.version,
            rule_set=message.rule_set,
            rule_set_version=message.rule_set_version,
            dataset=message.dataset,
            created_at=message.created_at,
            updated_at=message.updated_at,
            report=ScanReport.from_proto(message.report) if message.HasField("report") else None,
            resumed_from_row=message.resumed_from_row,
            schedule=message.schedule,
        )


@dataclass(frozen=True, slots=True)
class Table:
    """A PostgreSQL table as a scan dataset.

    Attributes:
        connection: The name of a connection configured on the service and the workers
            (`TESSERA_SCAN_CONNECTIONS`); the SDK never handles the DSN.
        table: The table; it must have a primary key (rows are read in key order).
        schema: Its schema.

    """

    connection: str
    table: str
    schema: str = "public"

    def to_proto(self) -> scans_pb2.Dataset:
        """Return the `Dataset` message."""
        return scans_pb2.Dataset(
            table=scans_pb2.TableDataset(
                connection=self.connection, schema=self.schema, table=self.table
            )
        )


@dataclass(frozen=True, slots=True)
class ScanSchedule:
    """A scan that beat starts every `every_s` seconds.

    Attributes:
        name: The schedule's name.
        subject: The contract subject scanned.
        dataset: What is scanned, for people (`file:/data/x.csv`, `table:warehouse/public.t`).
        every_s: The interval.
        next_run_at: Unix seconds of the next run.
        last_scan_id: The last scan it started ("" for none yet).
        last_run_at: When (Unix seconds; 0 for never).
        last_error: Why the last run started no scan ("" if it did).

    """

    name: str
    subject: str
    dataset: str
    every_s: float
    next_run_at: float
    last_scan_id: str
    last_run_at: float
    last_error: str

    @classmethod
    def from_proto(cls, message: scans_pb2.ScanSchedule) -> ScanSchedule:
        """Copy a `tessera.governance.v1.ScanSchedule`."""
        source = message.scan.dataset
        if source.HasField("table"):
            dataset = f"table:{source.table.connection}/{source.table.schema or 'public'}."
            dataset += source.table.table
        else:
            dataset = f"file:{source.file.path}"
        return cls(
            name=message.name,
            subject=message.scan.subject,
            dataset=dataset,
            every_s=message.every_s,
            next_run_at=message.next_run_at,
            last_scan_id=message.last_scan_id,
            last_run_at=message.last_run_at,
            last_error=message.last_error,
        )
