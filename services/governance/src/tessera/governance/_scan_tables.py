"""PostgreSQL tables as scan datasets: described by the service, read by workers in key order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

# asyncpg ships no type information (no py.typed marker).
import asyncpg  # type: ignore[import-untyped]

# pyarrow ships no type information (no py.typed marker, no stubs package used here).
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pa_csv  # type: ignore[import-untyped]
from pydantic import SecretStr

from tessera.core import BackendError, ValidationError

_CONNECT_TIMEOUT_S = 10.0
_T = TypeVar("_T")

# Columns, their types and their place in the primary key (0: not in it), in column order.
_DESCRIBE = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod),
       coalesce((SELECT k.n FROM unnest(i.indkey) WITH ORDINALITY AS k(att, n)
                 WHERE k.att = a.attnum), 0)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
  AND c.relkind IN ('r', 'p')
ORDER BY a.attnum
"""


class TableError(BackendError):
    """A table cannot be read: the database is unreachable or the query failed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, backend="postgres")


@dataclass(frozen=True, slots=True)
class TableSource:
    """A PostgreSQL table to scan, as resolved when the scan started.

    Attributes:
        connection: The configured connection's name (never its DSN: that holds credentials).
        schema: The table's schema.
        table: The table's name.
        columns: Every column, in table order.
        key: The primary key's columns, in key order: rows are read in this order.
        key_types: The SQL types of the key columns, to compare the last key read.

    """

    connection: str
    schema: str
    table: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    key_types: tuple[str, ...]

    def describe(self) -> str:
        """Return how people see the dataset: `table:<connection>/<schema>.<table>`."""
        return f"table:{self.connection}/{self.schema}.{self.table}"

    def to_dict(self) -> dict[str, Any]:
        """Encode as JSON-compatible values."""
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> TableSource:
        """Decode what `to_dict` gave."""
        return cls(
            connection=value["connection"],
            schema=value["schema"],
            table=value["table"],
            columns=tuple(value["columns"]),
            key=tuple(value["key"]),
            key_types=tuple(value["key_types"]),
        )


def connection_dsn(connections: Mapping[str, SecretStr], name: str, field: str) -> str:
    """Return the DSN of a configured connection.

    Raises:
        ValidationError: Naming `field` when no connection has that name.

    """
    dsn = connections.get(name)
    if dsn is None:
        configured = ", ".join(sorted(connections)) or "none"
        raise ValidationError.for_field(
            field, f"no connection named '{name}' is configured (configured: {configured})"
        )
    return dsn.get_secret_value()


async def describe_table(
    dsn: str, connection: str, schema: str, table: str, field: str
) -> TableSource:
    """Look a table up: its columns and primary key.

    Args:
        dsn: Where the database is (with credentials; never logged or stored).
        connection: The connection's name, stored in place of the DSN.
        schema: The table's schema.
        table: The table's name.
        field: The request field naming the table, for errors.

    Raises:
        ValidationError: Naming `field`: no such table, or it has no primary key (rows are read
            in key order, chunk after chunk, so that a scan can resume after its last chunk).
        TableError: The database cannot be reached.

    """
    async with _connected(dsn, connection) as conn:
        rows = await _query(connection, conn.fetch(_DESCRIBE, schema, table))
    if not rows:
        raise ValidationError.for_field(field, f"no table '{schema}.{table}' in '{connection}'")
    keyed = sorted((row[2], row[0], row[1]) for row in rows if row[2] > 0)
    if not keyed:
        raise ValidationError.for_field(
            field, f"table '{schema}.{table}' has no primary key; scans read rows in key order"
        )
    return TableSource(
        connection=connection,
        schema=schema,
        table=table,
        columns=tuple(row[0] for row in rows),
        key=tuple(name for _, name, _ in keyed),
        key_types=tuple(kind for _, _, kind in keyed),
    )


def table_batches(
    source: TableSource, dsn: str, chunk_rows: int, after: Sequence[str] | None
) -> Iterator[tuple[pa.RecordBatch, list[str]]]:
    """Read a table in key order, `chunk_rows` rows per query (keyset pagination).

    Every value arrives as text: the JSON form of the column (`to_json(c) #>> '{}'`), so numbers,
    booleans (`true`) and timestamps (RFC 3339) read as they would in a CSV file and the contract
    checks type them the same way. Each query is a short `COPY (SELECT ... WHERE key > last ORDER
    BY key LIMIT n)`, so memory holds one chunk, no transaction stays open, and reading can start
    after any key. Rows written during the scan behind the current key are not seen.

    Args:
        source: The table.
        dsn: Its connection's DSN.
        chunk_rows: Rows per chunk.
        after: The key (as text, in key order) of the last row already read, or None.

    Yields:
        Each chunk's rows (text columns, every column of the table) and the key of its last row.

    Raises:
        TableError: The database failed or the query did not run (a dropped column, ...).

    """
    loop = asyncio.new_event_loop()
    try:
        conn = loop.run_until_complete(_connect(dsn, source.connection))
        try:
            last = list(after) if after is not None else None
            while True:
                batch = loop.run_until_complete(_chunk(conn, source, chunk_rows, last))
                if batch is None:
                    return
                last = [batch.column(name)[-1].as_py() for name in source.key]
                yield batch, last
                if batch.num_rows < chunk_rows:
                    return
        finally:
            loop.run_until_complete(conn.close())
    finally:
        loop.close()


async def _chunk(
    conn: Any, source: TableSource, chunk_rows: int, after: list[str] | None
) -> pa.RecordBatch | None:
    columns = ", ".join(f"to_json(t.{_name(c)}) #>> '{{}}' AS {_name(c)}" for c in source.columns)
    # Qualified: a bare name in ORDER BY would mean the output column, the key's text form.
    order = ", ".join(f"t.{_name(name)}" for name in source.key)
    where = ""
    if after is not None:
        bounds = ", ".join(
            f"${index + 1}::text::{kind}" for index, kind in enumerate(source.key_types)
        )
        where = f"WHERE ({order}) > ({bounds})"
    query = (
        f"SELECT {columns} FROM {_name(source.schema)}.{_name(source.table)} AS t {where} "
        f"ORDER BY {order} LIMIT {int(chunk_rows)}"
    )
    parts: list[bytes] = []

    async def write(data: bytes) -> None:
        parts.append(bytes(data))

    await _query(
        source.connection,
        conn.copy_from_query(query, *(after or ()), output=write, format="csv"),
    )
    data = b"".join(parts)
    if not data:
        return None  # no rows after the last key
    names = list(source.columns)
    table = pa_csv.read_csv(
        pa.BufferReader(data),
        read_options=pa_csv.ReadOptions(column_names=names),
        convert_options=pa_csv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()),
            strings_can_be_null=True,
            # COPY writes NULL as an empty cell and an empty string as "".
            null_values=[""],
            quoted_strings_can_be_null=False,
        ),
    )
    return table.combine_chunks().to_batches()[0]


def _name(identifier: str) -> str:
    """Quote an SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


async def _connect(dsn: str, connection: str) -> Any:
    try:
        return await asyncpg.connect(dsn, timeout=_CONNECT_TIMEOUT_S)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
        # The DSN is not in the message: it may hold a password.
        raise TableError(
            f"cannot connect to PostgreSQL connection '{connection}': {error}"
        ) from None


@contextlib.asynccontextmanager
async def _connected(dsn: str, connection: str) -> AsyncIterator[Any]:
    conn = await _connect(dsn, connection)
    try:
        yield conn
    finally:
        await conn.close()


async def _query(connection: str, operation: Awaitable[_T]) -> _T:
    try:
        return await operation
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise TableError(f"PostgreSQL connection '{connection}': {error}") from None
