"""Scans of PostgreSQL tables: a real PostgreSQL, etcd, Redis, the service and worker processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio
from pydantic import SecretStr

from tessera.client.governance import GovernanceClient, Rule, Table
from tessera.core import ValidationError
from tessera.core.embedded import PostgresServer, RedisServer
from tessera.governance import GovernanceSettings, governance_binding
from tessera.governance._scan_datasets import Position, read_chunks
from tessera.governance._scan_engine import Checkpoint, Reference, Resume, Scan, ScanSpec
from tessera.governance._scan_fields import field_checks
from tessera.governance._scan_tables import describe_table
from tessera.testing import RunningService, serve_in_process

# Trust authentication ignores it, but it travels in the DSN like a real one: it must never
# show in a stored scan, an error or a log line.
PASSWORD = "pw-5ecret-7e55era"
SCHEMA = {
    "type": "object",
    "required": ["id", "status"],
    "properties": {
        "id": {"type": "integer"},
        "status": {"type": "string", "enum": ["new", "paid"]},
        "email": {"type": "string", "pattern": "^[^@]+@[^@]+$"},
        "placed_at": {"type": "string", "format": "date-time"},
        "amount": {"type": "number"},
        "vip": {"type": "boolean"},
    },
}


def _with_password(dsn: str) -> str:
    parts = urlsplit(dsn)
    user, host = parts.netloc.split("@")
    return urlunsplit(parts._replace(netloc=f"{user}:{PASSWORD}@{host}"))


@pytest.fixture(scope="module")
def shop_dsn(postgres_server: PostgresServer) -> str:
    return _with_password(postgres_server.dsn)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def orders_table(shop_dsn: str) -> AsyncIterator[str]:
    """Table `orders`: 1,000 rows, of which rows with id % 100 == 7 are bad in two ways."""
    conn = await asyncpg.connect(shop_dsn)
    try:
        await conn.execute(
            "DROP TABLE IF EXISTS orders, no_key, customers;"
            "CREATE TABLE customers (cid bigint PRIMARY KEY);"
            "INSERT INTO customers SELECT generate_series(1, 10);"
            "CREATE TABLE orders (id bigint PRIMARY KEY, status text, email text,"
            " placed_at timestamptz, amount numeric(10, 2), vip boolean, note text);"
            "CREATE TABLE no_key (id bigint)"
        )
        await conn.execute(
            "INSERT INTO orders SELECT i,"
            " CASE WHEN i % 100 = 7 THEN 'lost' ELSE 'new' END,"
            " CASE WHEN i % 100 = 7 THEN 'nope' ELSE 'a@b' END,"
            " timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute',"
            " i * 1.5, i % 2 = 0, CASE WHEN i % 3 = 0 THEN '' END"
            " FROM generate_series(1000, 1, -1) AS i"  # inserted backwards: key order != heap order
        )
        yield "orders"
    finally:
        await conn.close()


def _spec(source, **changes) -> ScanSpec:
    values = {
        "path": "",
        "file_format": "TABLE",
        "subject": "orders",
        "version": 1,
        "schema_json": json.dumps(SCHEMA),
        "rule_set": None,
        "unique_fields": ("id",),
        "references": (),
        "freshness_field": "placed_at",
        "freshness_sla_s": 1.0,
        "chunk_rows": 300,
        "sample_rows": 2,
        "table": source,
    }
    return ScanSpec(**{**values, **changes})


async def test_a_table_is_read_in_key_order_one_chunk_per_query(shop_dsn, orders_table):
    source = await describe_table(shop_dsn, "shop", "public", orders_table, "dataset.table.table")
    assert source.key == ("id",)
    assert source.columns[:3] == ("id", "status", "email")
    checks = field_checks(SCHEMA)
    dataset = _spec(source).dataset
    # The reader runs its own event loop, in the worker's scan thread: here too.
    chunks = await asyncio.to_thread(lambda: list(read_chunks(dataset, checks, 300, dsn=shop_dsn)))
    assert [chunk.rows for chunk in chunks] == [300, 300, 300, 100]
    assert [chunk.end for chunk in chunks] == [
        Position(300, ("300",)),
        Position(600, ("600",)),
        Position(900, ("900",)),
        Position(1000, ("1000",)),
    ]
    first = chunks[0].records()[0]
    # Values arrive as their JSON text and are typed by the contract, as CSV cells are.
    assert first["id"] == 1
    assert first["placed_at"] == "2024-01-01T00:01:00+00:00"
    assert first["amount"] == 1.5
    assert first["vip"] is False
    assert first["note"] is None
    assert chunks[0].records()[2]["note"] == ""  # an empty string is not null
    # Reading can start after any key: that is how a redelivered scan resumes.
    after = Position(600, ("600",))
    resumed = await asyncio.to_thread(
        lambda: list(read_chunks(dataset, checks, 300, dsn=shop_dsn, start=after))
    )
    assert [(chunk.first_row, chunk.rows) for chunk in resumed] == [(600, 300), (900, 100)]


async def test_a_table_scan_reports_every_check_and_resumes_from_a_checkpoint(
    shop_dsn, orders_table
):
    source = await describe_table(shop_dsn, "shop", "public", orders_table, "dataset.table.table")
    spec = _spec(source)
    connections = {"shop": SecretStr(shop_dsn)}
    checkpoints: list[Checkpoint] = []
    report = await asyncio.to_thread(Scan(spec, connections=connections).run, checkpoints.append)
    assert (report["rows"], report["failing_rows"]) == (1000, 10)
    fields = {f["field"]: (f["nulls"], f["invalid"], f["duplicates"]) for f in report["fields"]}
    assert fields["status"] == (0, 10, 0)
    assert fields["email"] == (0, 10, 0)
    assert fields["amount"] == (0, 0, 0)
    assert fields["vip"] == (0, 0, 0)
    assert report["freshness"]["latest"] == "2024-01-01T16:40:00Z"
    assert not report["freshness"]["fresh"]
    assert [sample["row"] for sample in report["samples"]] == [6, 106]

    middle = checkpoints[1]
    resume = Resume(json.loads(json.dumps(middle.state)), [cp.seen for cp in checkpoints[:2]])
    resumed = Scan(spec, connections=connections, resume=resume)
    again = await asyncio.to_thread(resumed.run, lambda _: None)

    def timeless(value):  # duration and age depend on when the scan ran
        return {**value, "duration_s": 0, "freshness": {**value["freshness"], "age_s": 0}}

    assert timeless(again) == timeless(report)


async def test_a_table_can_be_the_parent_of_a_referential_check(shop_dsn, orders_table, tmp_path):
    customers = await describe_table(shop_dsn, "shop", "public", "customers", "references")
    child = tmp_path / "orders.jsonl"
    child.write_text(
        "".join(
            json.dumps({"id": i, "cid": cid}) + "\n" for i, cid in enumerate([1, 10, 11, None, 3])
        )
    )
    reference = Reference(
        relationship="placed_by",
        child_fields=("cid",),
        parent_entity="customer",
        parent_fields=("cid",),
        unique=False,
        path="",
        file_format="TABLE",
        table=customers,
    )
    spec = _spec(
        None,
        path=str(child),
        file_format="JSON_LINES",
        references=(reference,),
        freshness_field="",
        chunk_rows=2,
    )
    scan = Scan(spec, connections={"shop": SecretStr(shop_dsn)})
    report = await asyncio.to_thread(scan.run, lambda _: None)
    assert [(r["relationship"], r["violations"]) for r in report["references"]] == [
        ("placed_by", 1)  # cid 11; a null cid is not checked
    ]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def table_service(
    governance_etcd, redis_server: RedisServer, shop_dsn: str
) -> AsyncIterator[RunningService]:
    settings = GovernanceSettings(
        port=0,
        metrics_port=None,
        redis_url=redis_server.url,
        scan_connections={"shop": SecretStr(shop_dsn)},
    )
    async with serve_in_process([governance_binding(governance_etcd, settings)], settings) as svc:
        yield svc


@pytest_asyncio.fixture(loop_scope="session")
async def gov(table_service: RunningService) -> AsyncIterator[GovernanceClient]:
    async with GovernanceClient.connect(table_service.server.address) as client:
        yield client


async def test_scan_of_a_table_through_the_service_and_a_worker(
    gov, start_worker, orders_table, shop_dsn, governance_etcd, name
):
    await gov.push_contract(name, SCHEMA)
    await gov.put_rule_set(name, [Rule(name="small", expression="record.amount < 1200.0")])
    worker = start_worker({"TESSERA_SCAN_CONNECTIONS": json.dumps({"shop": shop_dsn})})
    scan_id = await gov.start_scan(
        name, Table("shop", orders_table), rule_set=name, unique_fields=["id"], chunk_rows=250
    )
    scan = await gov.wait_for_scan(scan_id, timeout_s=60, poll_s=0.1)
    assert scan.state == "SUCCEEDED", worker.log()
    assert scan.dataset == "table:shop/public.orders"
    assert scan.report is not None
    # ids 800 to 1000 break the rule (amount = 1.5 id); 807 and 907 are bad rows already.
    assert (scan.report.rows, scan.report.failing_rows) == (1000, 10 + 201 - 2)
    assert [(r.rule, r.failed) for r in scan.report.rules] == [("small", 201)]
    stored = await governance_etcd.get(f"/tessera/governance/scans/{scan_id}")
    assert PASSWORD not in stored.value.decode()
    assert PASSWORD not in worker.log()


async def test_start_scan_of_a_table_bad_input_names_the_field(gov, orders_table, name):
    await gov.push_contract(name, SCHEMA)
    cases = {
        "dataset.table.connection": Table("nowhere", orders_table),
        "dataset.table.table": Table("shop", "absent"),
    }
    for field, table in cases.items():
        with pytest.raises(ValidationError) as refused:
            await gov.start_scan(name, table)
        assert [v.field for v in refused.value.violations] == [field]
        assert PASSWORD not in str(refused.value)
    with pytest.raises(ValidationError, match="no primary key") as keyless:
        await gov.start_scan(name, Table("shop", "no_key"))
    assert [v.field for v in keyless.value.violations] == ["dataset.table.table"]
    assert not [scan for scan in await gov.list_scans() if scan.subject == name]
