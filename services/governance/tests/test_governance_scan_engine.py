"""The scan engine on its own, over files it reads (no servers: pure logic and pyarrow)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tessera.core import ValidationError
from tessera.governance._rule_sets import RuleSetSpec, RuleSpec
from tessera.governance._scan_datasets import DatasetError
from tessera.governance._scan_engine import Checkpoint, Resume, Scan, ScanSpec
from tessera.governance._scan_seen import decode_seen, encode_seen

SCHEMA = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {"type": "integer"},
        "tier": {"type": "string", "enum": ["gold", "silver"]},
        "seen": {"type": "string", "format": "date-time"},
    },
}
RULES = RuleSetSpec(
    "r",
    1,
    "cel",
    (RuleSpec("positive", "record.id > 0", "id must be positive", "ERROR", "ENFORCE"),),
)


def spec(path, file_format, **changes) -> ScanSpec:
    values = {
        "path": str(path),
        "file_format": file_format,
        "subject": "s",
        "version": 1,
        "schema_json": json.dumps(SCHEMA),
        "rule_set": RULES,
        "unique_fields": ("id",),
        "references": (),
        "freshness_field": "seen",
        "freshness_sla_s": 10.0**12,
        "chunk_rows": 2,
        "sample_rows": 1,
    }
    return ScanSpec(**{**values, **changes})


def test_scan_spec_survives_its_json_form(tmp_path):
    original = spec(tmp_path / "x.csv", "CSV")
    assert ScanSpec.from_dict(json.loads(json.dumps(original.to_dict()))) == original


def test_parquet_scan_uses_the_column_types(tmp_path):
    path = tmp_path / "rows.parquet"
    table = pa.table(
        {
            "id": pa.array([1, 2, 2, -4, None], pa.int64()),
            "tier": ["gold", "bronze", None, "silver", "gold"],
            "seen": pa.array([0, 10**15, None, 5, 7], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, path)
    progress: list[int] = []
    report = Scan(spec(path, "PARQUET")).run(lambda cp: progress.append(cp.position.rows))
    assert progress == [2, 4, 5]
    fields = {f["field"]: (f["nulls"], f["invalid"], f["duplicates"]) for f in report["fields"]}
    assert fields == {"id": (1, 0, 1), "tier": (1, 1, 0), "seen": (1, 0, 0)}
    assert report["rules"][0]["failed"] == 1  # -4
    assert report["rules"][0]["errored"] == 1  # null id: `null > 0` has no overload
    assert report["freshness"]["latest"] == "2001-09-09T01:46:40Z"
    assert report["freshness"]["fresh"]
    # rows 1 (bronze), 2 (duplicate id), 3 (-4), 4 (null id)
    assert report["failing_rows"] == 4
    assert [sample["row"] for sample in report["samples"]] == [1]


def test_a_column_of_the_wrong_type_is_invalid_throughout(tmp_path):
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"id": ["1", "2"]}), path)
    report = Scan(spec(path, "PARQUET", rule_set=None, freshness_field="")).run(lambda _: None)
    fields = {f["field"]: (f["missing"], f["invalid"]) for f in report["fields"]}
    assert fields == {"id": (0, 2), "tier": (2, 0), "seen": (2, 0)}


def test_a_missing_file_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        Scan(spec(tmp_path / "absent.csv", "CSV")).run(lambda _: None)


def test_a_schema_without_properties_cannot_be_scanned(tmp_path):
    with pytest.raises(ValidationError) as error:
        Scan(spec(tmp_path / "x.csv", "CSV", schema_json='{"type": "object"}'))
    assert [v.field for v in error.value.violations] == ["subject"]


def test_csv_integer_beyond_64_bits_is_valid_not_a_failed_scan(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("id,tier,seen\n99999999999999999999999,gold,\n1,gold,\n1,gold,\n")
    report = Scan(spec(path, "CSV", rule_set=None)).run(lambda _: None)
    fields = {f["field"]: (f["invalid"], f["duplicates"]) for f in report["fields"]}
    assert fields["id"] == (0, 1)


def _without_duration(report):
    return {**report, "duration_s": None}


@pytest.mark.parametrize("file_format", ["CSV", "JSON_LINES", "PARQUET"])
def test_a_scan_resumed_from_any_checkpoint_reports_what_one_run_does(tmp_path, file_format):
    # CSV chunks follow the reader's blocks (64 KiB at least): enough rows for several.
    count = 30_000 if file_format == "CSV" else 23
    rows = [{"id": i % 7, "tier": ("gold", "tin")[i % 5 == 0], "seen": None} for i in range(count)]
    path = tmp_path / f"rows.{file_format.lower()}"
    if file_format == "CSV":
        path.write_text("id,tier\n" + "".join(f"{r['id']},{r['tier']}\n" for r in rows))
    elif file_format == "JSON_LINES":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    scan_spec = spec(path, file_format, chunk_rows=5, sample_rows=4, freshness_field="")
    checkpoints: list[Checkpoint] = []
    whole = Scan(scan_spec).run(checkpoints.append)
    assert whole["fields"][0]["duplicates"] == count - 7  # ids repeat every 7 rows
    assert len(checkpoints) >= 2
    for done, checkpoint in enumerate(checkpoints[:-1]):
        # Stored and read back as the worker does: state through JSON, seen values through
        # Arrow IPC; the last chunk's values are given twice, which must change nothing.
        state = json.loads(json.dumps(checkpoint.state))
        seen = [decode_seen(encode_seen(cp.seen)) for cp in checkpoints[: done + 1]]
        resumed = Scan(scan_spec, resume=Resume(state, [*seen, seen[-1]]))
        assert resumed.resumed_from_row == checkpoint.position.rows
        later: list[Checkpoint] = []
        report = resumed.run(later.append)
        assert later[0].position.rows > checkpoint.position.rows
        assert _without_duration(report) == _without_duration(whole)
