"""Scan throughput of one worker on a generated dataset, next to pandera on the same data.

Usage: ``python bench/governance_scan.py [--duration S] [--json] [--smoke] [--rows N]``

The script writes a dataset of ``--rows`` rows (1,000,000 by default, 20,000 with ``--smoke``)
as CSV and as Parquet, with five checks from the contract: ``id`` required and not null, ``id``
an integer, ``id`` unique, ``status`` in an enum, ``email`` matching a pattern. Each case scans
the whole file repeatedly for ``--duration`` seconds (at least once); ``ops_per_s`` is rows per
second, latencies are per whole scan.

Cases:

- ``pandera_csv_5_checks`` (peer): pandas ``read_csv`` in chunks of the same size, then a
  pandera ``DataFrameSchema`` with four of the checks (``lazy=True``, so every failure is
  counted rather than the first raised) and uniqueness across chunks in a Python set.
- ``scan_csv_5_checks``: the scan engine a worker runs (``tessera.governance._scan_engine``),
  on the CSV; compared with pandera.
- ``scan_parquet_5_checks``: the same on the Parquet file (typed columns, no text parsing).
- ``scan_csv_5_checks_cel_rule``: the CSV with a one-rule CEL rule set besides (rules run per
  row through the rule engine plugin), compared with the scan without it.

A worker adds one etcd write per chunk (100,000 rows by default) to this, nothing per row.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

# pandas-stubs is not a dependency, and pyarrow ships no type information.
import pandas as pd  # type: ignore[import-untyped]
import pandera.pandas as pda
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.csv as pa_csv  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from harness import CaseResult, Comparison, parse_options, report, summarize

from tessera.governance._rule_sets import RuleSetSpec, RuleSpec
from tessera.governance._scan_engine import Scan, ScanSpec

CHUNK_ROWS = 100_000
STATUSES = ["new", "paid", "shipped"]
EMAIL = r"^[^@]+@[^@]+$"
SCHEMA = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {"type": "integer"},
        "status": {"enum": STATUSES},
        "email": {"type": "string", "pattern": EMAIL},
    },
}


def write_dataset(directory: Path, rows: int) -> tuple[Path, Path]:
    # Built with pyarrow compute, not Python lists, so that 10 million rows take seconds.
    numbers = pa.array(np.arange(rows, dtype=np.int64))
    ids = pc.if_else(pc.equal(numbers, rows - 1), 0, numbers)  # one duplicate: the last row
    statuses = pc.take(pa.array(STATUSES), pc.cast(pc.remainder(numbers, 3), pa.int32()))
    status = pc.if_else(pc.equal(pc.remainder(numbers, 1000), 0), "lost", statuses)
    emails = pc.binary_join_element_wise("user", pc.cast(numbers, pa.string()), "@example.org", "")
    email = pc.if_else(pc.equal(pc.remainder(numbers, 777), 0), "nobody", emails)
    table = pa.table({"id": ids, "status": status, "email": email})
    csv_path, parquet_path = directory / "orders.csv", directory / "orders.parquet"
    pa_csv.write_csv(table, csv_path)
    pq.write_table(table, parquet_path)
    return csv_path, parquet_path


def tessera_scan(path: Path, file_format: str, rule_set: RuleSetSpec | None) -> Callable[[], int]:
    spec = ScanSpec(
        path=str(path),
        file_format=file_format,
        subject="orders",
        version=1,
        schema_json=json.dumps(SCHEMA),
        rule_set=rule_set,
        unique_fields=("id",),
        references=(),
        freshness_field="",
        freshness_sla_s=0.0,
        chunk_rows=CHUNK_ROWS,
        sample_rows=20,
    )

    def scan() -> int:
        report = Scan(spec).run(lambda _: None)
        return int(report["failing_rows"])

    return scan


def pandera_scan(path: Path) -> Callable[[], int]:
    schema = pda.DataFrameSchema(
        {
            "id": pda.Column(int, nullable=False),
            "status": pda.Column(str, pda.Check.isin(STATUSES)),
            "email": pda.Column(str, pda.Check.str_matches(EMAIL)),
        }
    )

    def scan() -> int:
        failing: set[int] = set()
        # Uniqueness across chunks, as the scan checks it: pandera sees one chunk at a time,
        # and its `unique=True` flags every copy, not the repeats only.
        seen: set[int] = set()
        for chunk in pd.read_csv(path, chunksize=CHUNK_ROWS):
            try:
                schema.validate(chunk, lazy=True)
            except pda.errors.SchemaErrors as errors:
                failing.update(int(i) for i in errors.failure_cases["index"].dropna())
            for index, value in zip(chunk.index, chunk["id"], strict=True):
                if value in seen:
                    failing.add(int(index))
                seen.add(value)
        return len(failing)

    return scan


def timed(case: str, scan: Callable[[], int], rows: int, duration_s: float) -> CaseResult:
    latencies: list[int] = []
    cpu_start, started = time.process_time(), time.perf_counter_ns()
    while True:
        before = time.perf_counter_ns()
        scan()
        latencies.append(time.perf_counter_ns() - before)
        if time.perf_counter_ns() - started >= duration_s * 1e9:
            break
    elapsed = time.perf_counter_ns() - started
    return summarize(
        case,
        latencies,
        elapsed,
        units_per_op=rows,
        client_cpu_s=time.process_time() - cpu_start,
    )


def main() -> None:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--rows", type=int, default=0)
    known, rest = extra.parse_known_args()
    options = parse_options(__doc__ or "", rest)
    rows = known.rows or (20_000 if options.smoke else 1_000_000)
    rule_set = RuleSetSpec(
        "orders", 1, "cel", (RuleSpec("id_positive", "record.id >= 0", "m", "ERROR", "ENFORCE"),)
    )
    with tempfile.TemporaryDirectory() as directory:
        csv_path, parquet_path = write_dataset(Path(directory), rows)
        ours, peer = tessera_scan(csv_path, "CSV", None), pandera_scan(csv_path)
        # Both must find the same failing rows, or the comparison means nothing.
        found, expected = ours(), peer()
        if found != expected:
            sys.exit(f"scan found {found} failing rows, pandera {expected}")
        duration = options.duration_s
        pandera = timed("pandera_csv_5_checks", peer, rows, duration)
        csv = timed("scan_csv_5_checks", ours, rows, duration)
        parquet = timed(
            "scan_parquet_5_checks", tessera_scan(parquet_path, "PARQUET", None), rows, duration
        )
        with_rule = timed(
            "scan_csv_5_checks_cel_rule", tessera_scan(csv_path, "CSV", rule_set), rows, duration
        )
    report(
        [
            Comparison(pandera),
            Comparison(csv, pandera),
            Comparison(parquet, pandera),
            Comparison(with_rule, csv),
        ],
        options,
        sys.stdout,
    )


if __name__ == "__main__":
    main()
