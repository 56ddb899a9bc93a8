"""The scan itself: every check over every chunk of a dataset, tallied into one report."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# pyarrow ships no type information (no py.typed marker, no stubs package used here).
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
from pydantic import SecretStr

from tessera.core.plugins import RULE_ENGINES, load_plugins
from tessera.governance._rule_sets import CompiledRuleSet, RuleSetSpec
from tessera.governance._scan_datasets import Chunk, Dataset, Position, latest_micros, read_chunks
from tessera.governance._scan_fields import FieldCheck, field_checks
from tessera.governance._scan_tables import TableSource, connection_dsn

# Samples live in the scan's etcd value (at most 1.5 MiB): each row is cut to this length.
_SAMPLE_CHARS = 2048


@dataclass(frozen=True, slots=True)
class Reference:
    """A referential check with the dataset of its parent entity."""

    relationship: str
    child_fields: tuple[str, ...]
    parent_entity: str
    parent_fields: tuple[str, ...]
    unique: bool
    path: str
    file_format: str
    table: TableSource | None = None

    @property
    def dataset(self) -> Dataset:
        """The parent's dataset."""
        return Dataset(self.path, self.file_format, self.table)


@dataclass(frozen=True, slots=True)
class ScanSpec:
    """Everything a worker needs to run a scan, resolved by the service when it started.

    Attributes:
        path: The dataset file ("" for a table).
        file_format: `CSV`, `JSON_LINES`, `PARQUET` or `TABLE`.
        subject: The contract's subject; `version` its version; `schema_json` its schema.
        rule_set: The rule set to evaluate, or None.
        unique_fields: Fields whose values must not repeat.
        references: Referential checks with their parents' datasets.
        freshness_field: Timestamp field of the freshness check ("" for none).
        freshness_sla_s: Largest allowed age of its latest value.
        chunk_rows: Rows per chunk.
        sample_rows: Most failing rows kept in the report.
        table: The table when `file_format` is `TABLE`.

    """

    path: str
    file_format: str
    subject: str
    version: int
    schema_json: str
    rule_set: RuleSetSpec | None
    unique_fields: tuple[str, ...]
    references: tuple[Reference, ...]
    freshness_field: str
    freshness_sla_s: float
    chunk_rows: int
    sample_rows: int
    table: TableSource | None = None

    @property
    def dataset(self) -> Dataset:
        """The scanned dataset."""
        return Dataset(self.path, self.file_format, self.table)

    def to_dict(self) -> dict[str, Any]:
        """Encode as JSON-compatible values."""
        value = {name: getattr(self, name) for name in self.__slots__}
        value["rule_set"] = None if self.rule_set is None else json.loads(self.rule_set.to_json())
        value["table"] = None if self.table is None else self.table.to_dict()
        value["references"] = [
            {
                **{name: getattr(ref, name) for name in ref.__slots__},
                "table": None if ref.table is None else ref.table.to_dict(),
            }
            for ref in self.references
        ]
        return value

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> ScanSpec:
        """Decode what `to_dict` gave."""
        rule_set = value["rule_set"]
        return cls(
            **{
                **value,
                "rule_set": None
                if rule_set is None
                else RuleSetSpec.from_json(json.dumps(rule_set).encode()),
                "unique_fields": tuple(value["unique_fields"]),
                "table": _table(value.get("table")),
                "references": tuple(
                    Reference(
                        **{
                            **ref,
                            "child_fields": tuple(ref["child_fields"]),
                            "parent_fields": tuple(ref["parent_fields"]),
                            "table": _table(ref.get("table")),
                        }
                    )
                    for ref in value["references"]
                ),
            }
        )


def _table(value: Mapping[str, Any] | None) -> TableSource | None:
    return None if value is None else TableSource.from_dict(value)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a scan has done after a chunk: enough to resume there after a crash.

    Attributes:
        position: Where reading resumes.
        state: Every tally so far (counts, samples, latest timestamp), JSON-compatible and small.
        seen: The distinct values this chunk added to each set of earlier values (uniqueness and
            one-to-one references), by set name; empty when the scan keeps no such sets. These
            grow with the data, so they are stored apart from `state`, one entry per chunk.

    """

    position: Position
    state: dict[str, Any]
    seen: dict[str, pa.Array]


@dataclass(frozen=True, slots=True)
class Resume:
    """An earlier attempt's last checkpoint, to continue from.

    Attributes:
        state: The checkpoint's `state`.
        seen: The `seen` values of every chunk up to the checkpoint, in any order (merging them
            is a union, so a chunk given twice changes nothing).

    """

    state: Mapping[str, Any]
    seen: Iterable[Mapping[str, pa.Array]]


@dataclass(slots=True)
class _FieldTally:
    check: FieldCheck
    nulls: int = 0
    missing: int = 0
    invalid: int = 0
    duplicates: int = 0
    seen: set[Any] | None = None


@dataclass(slots=True)
class _ReferenceTally:
    reference: Reference
    parent_keys: set[str | None]
    violations: int = 0
    duplicates: int = 0
    seen: set[Any] = field(default_factory=set)


class Scan:
    """Runs the checks of a `ScanSpec` chunk by chunk and tallies the report.

    Memory: one chunk, plus one entry per distinct value of each unique field and of each
    referenced parent key. Not thread-safe; one scan per object.

    Args:
        spec: What to scan.
        connections: DSNs of the configured PostgreSQL connections, by name (table datasets).
        resume: Continue after an earlier attempt's checkpoint rather than from row 0.

    Raises:
        ValidationError: The contract declares no properties, or a rule does not compile, or a
            table's connection is not configured here.

    """

    def __init__(
        self,
        spec: ScanSpec,
        *,
        connections: Mapping[str, SecretStr] | None = None,
        resume: Resume | None = None,
    ) -> None:
        self._spec = spec
        self._connections = connections or {}
        self._checks = field_checks(json.loads(spec.schema_json))
        self._fields = [
            _FieldTally(check, seen=set() if check.name in spec.unique_fields else None)
            for check in self._checks
        ]
        self._rules: CompiledRuleSet | None = None
        if spec.rule_set is not None:
            engine = load_plugins(RULE_ENGINES).get(spec.rule_set.engine).create()
            self._rules = CompiledRuleSet(spec.rule_set, engine)
        rules = spec.rule_set.rules if spec.rule_set else ()
        self._rule_counts = [[0, 0] for _ in rules]
        self._references: list[_ReferenceTally] = []
        self._latest: int | None = None
        self._rows = 0
        self._failing_rows = 0
        self._samples: list[dict[str, Any]] = []
        self._position = Position()
        self._elapsed_s = 0.0
        self._resume = resume
        self._chunk_seen: dict[str, pa.Array] = {}

    @property
    def resumed_from_row(self) -> int:
        """The row this scan starts reading at (0 unless it resumes)."""
        return 0 if self._resume is None else int(self._resume.state["position"]["rows"])

    def run(self, on_chunk: Callable[[Checkpoint], None]) -> dict[str, Any]:
        """Read the dataset (from the resume point) and return the report (as ScanReport).

        Args:
            on_chunk: Called after each chunk with its checkpoint; may raise to stop.

        Raises:
            DatasetError: A dataset cannot be read.
            TableError: A table cannot be read.

        """
        started = time.monotonic()
        self._references = [
            _ReferenceTally(ref, _parent_keys(ref, self._spec.chunk_rows, self._dsn(ref.table)))
            for ref in self._spec.references
        ]
        if self._resume is not None:
            self._restore(self._resume)
        chunks = read_chunks(
            self._spec.dataset,
            self._checked(),
            self._spec.chunk_rows,
            dsn=self._dsn(self._spec.table),
            start=self._position,
        )
        for chunk in chunks:
            self._chunk_seen = {}
            self._tally(chunk)
            self._rows += chunk.rows
            self._position = chunk.end
            on_chunk(
                Checkpoint(
                    self._position,
                    self._state(self._elapsed_s + time.monotonic() - started),
                    self._chunk_seen,
                )
            )
        return self._report(self._elapsed_s + time.monotonic() - started)

    def _dsn(self, table: TableSource | None) -> str:
        if table is None:
            return ""
        return connection_dsn(self._connections, table.connection, "dataset.table.connection")

    def _state(self, elapsed_s: float) -> dict[str, Any]:
        position = self._position
        return {
            "position": {
                "rows": position.rows,
                "after": None if position.after is None else list(position.after),
            },
            "rows": self._rows,
            "failing_rows": self._failing_rows,
            "fields": [[t.nulls, t.missing, t.invalid, t.duplicates] for t in self._fields],
            "references": [[t.violations, t.duplicates] for t in self._references],
            "rules": [list(counts) for counts in self._rule_counts],
            "latest": self._latest,
            "samples": self._samples,
            "elapsed_s": elapsed_s,
        }

    def _restore(self, resume: Resume) -> None:
        state = resume.state
        after = state["position"]["after"]
        self._position = Position(
            state["position"]["rows"], None if after is None else tuple(after)
        )
        self._rows, self._failing_rows = state["rows"], state["failing_rows"]
        for tally, (nulls, missing, invalid, duplicates) in zip(
            self._fields, state["fields"], strict=True
        ):
            tally.nulls, tally.missing, tally.invalid, tally.duplicates = (
                nulls,
                missing,
                invalid,
                duplicates,
            )
        for ref, (violations, duplicates) in zip(
            self._references, state["references"], strict=True
        ):
            ref.violations, ref.duplicates = violations, duplicates
        self._rule_counts = [list(counts) for counts in state["rules"]]
        self._latest = state["latest"]
        self._samples = list(state["samples"])
        self._elapsed_s = state["elapsed_s"]
        sets = self._seen_sets()
        for chunk in resume.seen:
            for name, values in chunk.items():
                sets[name].update(values.to_pylist())

    def _seen_sets(self) -> dict[str, set[Any]]:
        """Every set of earlier values, by the name its checkpoint entries use."""
        sets = {f"field:{t.check.name}": t.seen for t in self._fields if t.seen is not None}
        sets.update({f"reference:{t.reference.relationship}": t.seen for t in self._references})
        return {name: seen for name, seen in sets.items() if seen is not None}

    def _checked(self) -> list[FieldCheck]:
        # Referencing fields the contract does not declare are read as untyped text.
        declared = {check.name for check in self._checks}
        extra = {
            name
            for ref in self._spec.references
            for name in ref.child_fields
            if name not in declared
        }
        return self._checks + [_untyped(name) for name in sorted(extra)]

    def _tally(self, chunk: Chunk) -> None:
        failing = pa.repeat(pa.scalar(False), chunk.rows)
        problems: dict[str, pa.Array] = {}
        for tally in self._fields:
            check, column = tally.check, chunk.columns[tally.check.name]
            tally.nulls += _count(column.null)
            tally.missing += _count(column.missing)
            tally.invalid += _count(column.invalid)
            if check.required:
                problems[f"{check.name}: missing"] = column.missing
            if not check.nullable:
                problems[f"{check.name}: null"] = column.null
            problems[f"{check.name}: invalid"] = column.invalid
            if tally.seen is not None:
                repeated, known = _repeats(column.values, tally.seen)
                self._chunk_seen[f"field:{check.name}"] = known
                tally.duplicates += _count(repeated)
                problems[f"{check.name}: duplicate"] = repeated
            if check.name == self._spec.freshness_field:
                latest = latest_micros(column)
                if latest is not None and (self._latest is None or latest > self._latest):
                    self._latest = latest
        for ref in self._references:
            self._tally_reference(ref, chunk, problems)
        records: list[dict[str, Any]] | None = None
        if self._rules is not None:
            records = chunk.records()
            self._tally_rules(records, problems)
        for mask in problems.values():
            failing = pc.or_(failing, mask)
        self._failing_rows += _count(failing)
        room = self._spec.sample_rows - len(self._samples)
        if room > 0 and self._failing_rows:
            indices = pc.indices_nonzero(failing)[:room].to_pylist()
            if indices:
                records = records if records is not None else chunk.records()
                for index in indices:
                    self._samples.append(
                        {
                            "row": chunk.first_row + index,
                            "record_json": json.dumps(records[index], default=str)[:_SAMPLE_CHARS],
                            "problems": [
                                what for what, mask in problems.items() if mask[index].as_py()
                            ],
                        }
                    )

    def _tally_reference(
        self, tally: _ReferenceTally, chunk: Chunk, problems: dict[str, pa.Array]
    ) -> None:
        ref = tally.reference
        keys = _keys([chunk.columns[name].text for name in ref.child_fields])
        parents = tally.parent_keys
        violating = [key is not None and key not in parents for key in keys.to_pylist()]
        tally.violations += sum(violating)
        problems[f"{ref.relationship}: no such {ref.parent_entity}"] = pa.array(violating)
        if ref.unique:
            repeated, known = _repeats(keys, tally.seen)
            self._chunk_seen[f"reference:{ref.relationship}"] = known
            tally.duplicates += _count(repeated)
            problems[f"{ref.relationship}: repeated"] = repeated

    def _tally_rules(self, records: list[dict[str, Any]], problems: dict[str, pa.Array]) -> None:
        assert self._rules is not None
        blocking = []
        per_rule: list[list[bool]] = [[] for _ in self._rule_counts]
        for valid, verdicts in self._rules.evaluate_many(records):
            blocking.append(not valid)
            for index, verdict in enumerate(verdicts):
                bad = verdict.outcome != "PASSED"
                per_rule[index].append(bad)
                if bad:
                    self._rule_counts[index][verdict.outcome == "ERRORED"] += 1
        for rule, flags in zip(self._rules.spec.rules, per_rule, strict=True):
            problems[f"rule {rule.name}: not passed"] = pa.array(flags, pa.bool_())
        # Only blocking outcomes make a row fail; the per-rule masks name what went wrong.
        problems["rules: record invalid"] = pa.array(blocking, pa.bool_())

    def _report(self, duration_s: float) -> dict[str, Any]:
        spec = self._spec
        freshness = None
        if spec.freshness_field:
            now = time.time()
            latest = None if self._latest is None else self._latest / 1e6
            age = None if latest is None else max(0.0, now - latest)
            freshness = {
                "field": spec.freshness_field,
                "latest": ""
                if latest is None
                else datetime.fromtimestamp(latest, UTC).isoformat().replace("+00:00", "Z"),
                "age_s": age or 0.0,
                "sla_s": spec.freshness_sla_s,
                "fresh": age is not None and age <= spec.freshness_sla_s,
            }
        rules = spec.rule_set.rules if spec.rule_set else ()
        return {
            "rows": self._rows,
            "failing_rows": self._failing_rows,
            "fields": [
                {
                    "field": tally.check.name,
                    "nulls": tally.nulls,
                    "missing": tally.missing,
                    "invalid": tally.invalid,
                    "duplicates": tally.duplicates,
                    "required": tally.check.required,
                }
                for tally in self._fields
            ],
            "rules": [
                {
                    "rule": rule.name,
                    "failed": failed,
                    "errored": errored,
                    "severity": rule.severity,
                    "mode": rule.mode,
                }
                for rule, (failed, errored) in zip(rules, self._rule_counts, strict=True)
            ],
            "references": [
                {
                    "relationship": tally.reference.relationship,
                    "child_fields": list(tally.reference.child_fields),
                    "parent_entity": tally.reference.parent_entity,
                    "violations": tally.violations,
                    "duplicates": tally.duplicates,
                }
                for tally in self._references
            ],
            "freshness": freshness,
            "samples": self._samples,
            "duration_s": duration_s,
        }


def _parent_keys(ref: Reference, chunk_rows: int, dsn: str) -> set[str | None]:
    keys: set[str | None] = set()
    checks = [_untyped(name) for name in ref.parent_fields]
    for chunk in read_chunks(ref.dataset, checks, chunk_rows, dsn=dsn):
        keys.update(_keys([chunk.columns[name].text for name in ref.parent_fields]).to_pylist())
    keys.discard(None)
    return keys


def _keys(columns: list[pa.Array]) -> pa.Array:
    """Join key columns into one text per row (null when any part is null)."""
    if len(columns) == 1:
        return columns[0]
    return pc.binary_join_element_wise(*columns, "\x1f", null_handling="emit_null")


def _repeats(values: pa.Array, seen: set[Any]) -> tuple[pa.Array, pa.Array]:
    """Flag each non-null value an earlier row had (in this chunk or before); adds to `seen`.

    Returns the flags and the chunk's distinct non-null values (what `seen` gained at most).

    Vectorised: the first row of each distinct value comes from a hash aggregation, and only the
    chunk's distinct values meet `seen`, through C-level set operations.
    """
    rows = len(values)
    distinct = pc.unique(values)
    numbers = pc.subtract(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), rows)), 1)
    groups = pc.index_in(values, value_set=distinct)
    firsts = (
        pa.table({"group": groups, "row": numbers})
        .group_by("group", use_threads=False)
        .aggregate([("row", "min")])
        .column("row_min")
    )
    repeated = pc.invert(pc.is_in(numbers, value_set=firsts))
    present = distinct.drop_null()
    known = present.to_pylist()
    earlier = seen.intersection(known)
    seen.update(known)
    if earlier:
        repeated = pc.or_(repeated, pc.is_in(values, value_set=pa.array(earlier, values.type)))
    return pc.and_(repeated, pc.is_valid(values)), present


def _count(mask: pa.Array) -> int:
    return int(pc.sum(mask).as_py() or 0)


def _untyped(name: str) -> FieldCheck:
    return FieldCheck(name, False, frozenset(), True, None, None, False)
