"""Datasets a scan reads, chunk by chunk, and the per-field columns the checks work on."""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# pyarrow ships no type information (no py.typed marker, no stubs package used here).
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.csv as pa_csv  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from tessera.core import FailedPreconditionError, ValidationError
from tessera.governance._scan_fields import (
    DATE_TIME,
    TEXT_PATTERNS,
    FieldCheck,
    as_text,
    python_text,
)
from tessera.governance._scan_tables import TableSource, table_batches

FORMATS = ("CSV", "JSON_LINES", "PARQUET")
#: The format of a scan whose dataset is a PostgreSQL table.
TABLE = "TABLE"
_SUFFIXES = {".csv": "CSV", ".jsonl": "JSON_LINES", ".ndjson": "JSON_LINES", ".parquet": "PARQUET"}
_ZONED = r"([Zz]|[-+]\d{2}:?\d{2})$"
_SAMPLE_BYTES = 1 << 16


class DatasetError(FailedPreconditionError):
    """A dataset cannot be read (missing file, bad CSV header, a line that is not JSON)."""


@dataclass(frozen=True, slots=True)
class Dataset:
    """Where rows come from: a file the worker reads, or a PostgreSQL table.

    Attributes:
        path: The file ("" for a table).
        file_format: `CSV`, `JSON_LINES`, `PARQUET`, or `TABLE`.
        table: The table when `file_format` is `TABLE`.

    """

    path: str
    file_format: str
    table: TableSource | None = None

    def describe(self) -> str:
        """Return how people see the dataset: `file:<path>` or `table:<connection>/<name>`."""
        return self.table.describe() if self.table is not None else f"file:{self.path}"


@dataclass(frozen=True, slots=True)
class Position:
    """Where reading a dataset starts: after `rows` rows, and for tables after the key `after`.

    Attributes:
        rows: Rows already read.
        after: The key (text, in key order) of the last row read, for tables; None otherwise.

    """

    rows: int = 0
    after: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class FieldColumn:
    """One field over the rows of a chunk, as boolean masks and text.

    Attributes:
        missing: The row has no such field.
        null: The field is present and null.
        invalid: The field is present, not null and breaks its check.
        text: The values as text (null where missing or null), for referential keys.
        values: The values in their own type (the contract's, for CSV; invalid ones null), for
            uniqueness and freshness.

    """

    missing: pa.Array
    null: pa.Array
    invalid: pa.Array
    text: pa.Array
    values: pa.Array


@dataclass(frozen=True, slots=True)
class Chunk:
    """A run of consecutive rows.

    Attributes:
        first_row: 0-based number of its first row in the dataset.
        rows: How many rows.
        columns: The checked fields.
        records: Builds the rows as JSON-like dicts (for rules and samples; costly, so lazy).
        end: Where reading resumes after this chunk.

    """

    first_row: int
    rows: int
    columns: dict[str, FieldColumn]
    records: Callable[[], list[dict[str, Any]]]
    end: Position


def file_format(path: str, declared: str) -> str:
    """Return the format of a file: `declared`, else the one its suffix names.

    Raises:
        ValidationError: Naming `dataset.file.format` when neither says.

    """
    if declared:
        return declared
    found = _SUFFIXES.get(Path(path).suffix.lower())
    if found is None:
        raise ValidationError.for_field(
            "dataset.file.format", f"give a format: '{path}' has no .csv, .jsonl or .parquet suffix"
        )
    return found


def read_chunks(
    dataset: Dataset,
    checks: Sequence[FieldCheck],
    chunk_rows: int,
    *,
    dsn: str = "",
    start: Position = Position(),
) -> Iterator[Chunk]:
    """Read a dataset chunk by chunk, from `start`; only one chunk is in memory at a time.

    Files are read from their beginning and the rows before `start.rows` skipped unchecked;
    tables are read from the key after `start.after`.

    Args:
        dataset: What to read.
        checks: The fields to check.
        chunk_rows: Rows per chunk (CSV chunks follow the reader's blocks: about this many).
        dsn: The table's connection DSN (tables only).
        start: Where to start.

    Raises:
        DatasetError: The file is missing or unreadable in its format.
        TableError: The table cannot be read.

    """
    if dataset.table is not None:
        first_row = start.rows
        for batch, last in table_batches(dataset.table, dsn, chunk_rows, start.after):
            end = Position(first_row + batch.num_rows, tuple(last))
            yield text_chunk(first_row, batch, checks, end)
            first_row = end.rows
        return
    path, file_format = dataset.path, dataset.file_format
    readers = {"CSV": _csv_chunks, "JSON_LINES": _json_lines_chunks, "PARQUET": _parquet_chunks}
    try:
        yield from readers[file_format](Path(path), checks, chunk_rows, start.rows)
    except FileNotFoundError:
        raise DatasetError(f"dataset file '{path}' does not exist") from None
    except (pa.ArrowInvalid, OSError, csv.Error, UnicodeDecodeError) as error:
        raise DatasetError(f"dataset file '{path}' is not valid {file_format}: {error}") from None


def _skipped(
    batches: Iterator[pa.RecordBatch], start_row: int
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Yield each batch with its first row number, without the rows before `start_row`."""
    first_row = 0
    for batch in batches:
        rows = batch.num_rows
        if first_row + rows > start_row:
            skip = max(0, start_row - first_row)
            yield first_row + skip, batch.slice(skip) if skip else batch
        first_row += rows


def latest_micros(column: FieldColumn) -> int | None:
    """Return the latest timestamp of a column in Unix microseconds (None: no valid value).

    Text is read as RFC 3339 (no zone means UTC), numbers as Unix seconds.
    """
    values = column.values
    if pa.types.is_timestamp(values.type):
        micros = pc.cast(pc.cast(values, pa.timestamp("us", tz=values.type.tz)), pa.int64())
    elif pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        micros = pc.cast(pc.multiply(pc.cast(values, pa.float64()), 1e6), pa.int64())
    else:
        text = pc.filter(
            column.text, pc.fill_null(pc.match_substring_regex(column.text, DATE_TIME), False)
        )
        zoned = pc.fill_null(pc.match_substring_regex(text, _ZONED), False)
        parts = [
            pc.cast(pc.filter(text, zoned), pa.timestamp("us", tz="UTC")),
            pc.cast(pc.filter(text, pc.invert(zoned)), pa.timestamp("us")),
        ]
        micros = pa.chunked_array([pc.cast(part, pa.int64()) for part in parts], pa.int64())
    latest = pc.max(micros).as_py()
    return None if latest is None else int(latest)


def _csv_chunks(
    path: Path, checks: Sequence[FieldCheck], chunk_rows: int, start_row: int
) -> Iterator[Chunk]:
    with path.open("rb") as file:
        sample = file.read(_SAMPLE_BYTES)
    lines = sample.splitlines()
    if not lines:
        raise DatasetError(f"dataset file '{path}' is empty: a CSV needs a header line")
    header = next(csv.reader([lines[0].decode()]))
    row_bytes = max(16, len(sample) // max(1, len(lines)))
    reader = pa_csv.open_csv(
        path,
        read_options=pa_csv.ReadOptions(block_size=max(_SAMPLE_BYTES, row_bytes * chunk_rows)),
        # Every column as text: a type inferred from the first block would make a later block
        # with one bad cell unreadable; the checks decide what a cell is instead.
        convert_options=pa_csv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()),
            strings_can_be_null=True,
            null_values=[""],
        ),
    )
    for first_row, batch in _skipped(reader, start_row):
        yield text_chunk(first_row, batch, checks, Position(first_row + batch.num_rows))


def text_chunk(
    first_row: int, batch: pa.RecordBatch, checks: Sequence[FieldCheck], end: Position
) -> Chunk:
    """Build a chunk from rows whose every column is text (CSV cells, table values as text)."""
    rows = batch.num_rows
    columns: dict[str, FieldColumn] = {}
    typed: dict[str, pa.Array] = {}
    for check in checks:
        index = batch.schema.get_field_index(check.name)
        if index < 0:
            columns[check.name] = _absent(rows)
            continue
        text = batch.column(index)
        null = pc.is_null(text)
        invalid = _invalid(null, check.text_valid(text))
        # Typed values (ints rather than digit strings) are cheaper to compare for uniqueness.
        typed[check.name] = _typed_from_text(check, text, invalid)
        columns[check.name] = FieldColumn(
            _constant(rows, False), null, invalid, text, typed[check.name]
        )
    names = [name for name in batch.schema.names if name not in typed]
    table = pa.table({**{name: batch.column(name) for name in names}, **typed})
    return Chunk(first_row, rows, columns, table.to_pylist, end)


def _typed_from_text(check: FieldCheck, text: pa.Array, invalid: pa.Array) -> pa.Array:
    """Convert a text column to the field's type, so that rules see numbers as numbers."""
    if len(check.types) != 1:
        return text
    (kind,) = check.types
    if kind not in TEXT_PATTERNS:
        return text
    usable = pc.if_else(invalid, pa.scalar(None, pa.string()), text)
    if kind == "boolean":
        return pc.equal(pc.utf8_lower(usable), "true")
    if kind == "integer":
        try:
            return pc.cast(usable, pa.int64())
        except pa.ArrowInvalid:
            pass  # an integer beyond 64 bits is still a JSON integer: read the chunk as floats
    return pc.cast(usable, pa.float64())


def _json_lines_chunks(
    path: Path, checks: Sequence[FieldCheck], chunk_rows: int, start_row: int
) -> Iterator[Chunk]:
    first_row = 0
    with path.open(encoding="utf-8") as file:
        while first_row < start_row:
            line = file.readline()
            if not line:
                return
            if line.strip():
                first_row += 1
        while True:
            records: list[dict[str, Any]] = []
            for line in file:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DatasetError(
                        f"dataset file '{path}': row {first_row + len(records)} is not JSON: "
                        f"{error.msg}"
                    ) from None
                if not isinstance(record, dict):
                    raise DatasetError(
                        f"dataset file '{path}': row {first_row + len(records)} is not an object"
                    )
                records.append(record)
                if len(records) == chunk_rows:
                    break
            if not records:
                return
            yield record_chunk(first_row, records, checks)
            first_row += len(records)


def record_chunk(
    first_row: int, records: list[dict[str, Any]], checks: Sequence[FieldCheck]
) -> Chunk:
    """Build a chunk from rows given as dicts (JSON Lines, database rows)."""
    columns = {}
    for check in checks:
        name = check.name
        missing = pa.array([name not in record for record in records], pa.bool_())
        values = [record.get(name) for record in records]
        # Absent and null both read as None: null is None where the key is present.
        null = pc.and_(pc.invert(missing), pa.array([v is None for v in values], pa.bool_()))
        invalid = _invalid(pc.or_(missing, null), check.python_valid(values))
        texts = check_text(values)
        columns[name] = FieldColumn(missing, null, invalid, texts, texts)
    return Chunk(
        first_row, len(records), columns, lambda: records, Position(first_row + len(records))
    )


def check_text(values: Sequence[object]) -> pa.Array:
    """Return Python values as a text column (strings as they are, others as JSON)."""
    return pa.array([python_text(value) for value in values], pa.string())


def _parquet_chunks(
    path: Path, checks: Sequence[FieldCheck], chunk_rows: int, start_row: int
) -> Iterator[Chunk]:
    parquet = pq.ParquetFile(path)
    for first_row, batch in _skipped(parquet.iter_batches(batch_size=chunk_rows), start_row):
        rows = batch.num_rows
        columns = {}
        for check in checks:
            index = batch.schema.get_field_index(check.name)
            if index < 0:
                columns[check.name] = _absent(rows)
                continue
            values = batch.column(index)
            null = pc.is_null(values)
            invalid = _invalid(null, check.typed_valid(values))
            columns[check.name] = FieldColumn(
                _constant(rows, False), null, invalid, as_text(values), values
            )
        records = functools.partial(_json_like_records, batch)
        yield Chunk(first_row, rows, columns, records, Position(first_row + rows))


def _json_like_records(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """Return the rows with JSON-like values only, as rule engines take them.

    Timestamps become RFC 3339 text in UTC (naive ones are taken as UTC), dates ISO text and
    decimals floats.
    """
    columns = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        kind = column.type
        if pa.types.is_timestamp(kind):
            utc = pc.cast(column, pa.timestamp(kind.unit, tz="UTC")) if kind.tz else column
            column = pc.strftime(utc, format="%Y-%m-%dT%H:%M:%SZ")
        elif pa.types.is_date(kind):
            column = pc.cast(column, pa.string())
        elif pa.types.is_decimal(kind):
            column = pc.cast(column, pa.float64())
        columns[name] = column
    records: list[dict[str, Any]] = pa.table(columns).to_pylist()
    return records


def _invalid(absent: pa.Array, valid: pa.Array) -> pa.Array:
    """Rows holding a value that is not valid (never null, so masks combine with or)."""
    return pc.and_(pc.invert(absent), pc.fill_null(pc.invert(valid), True))


def _absent(rows: int) -> FieldColumn:
    falses = _constant(rows, False)
    nothing = pa.nulls(rows, pa.string())
    return FieldColumn(_constant(rows, True), falses, falses, nothing, nothing)


def _constant(rows: int, value: bool) -> pa.Array:
    return pa.repeat(pa.scalar(value, pa.bool_()), rows)
