"""Scans end to end: a real etcd, Redis, the service in process and real worker processes."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from typer.testing import CliRunner

from tessera.client.cli._app import app
from tessera.client.governance import (
    Entity,
    GovernanceClient,
    Relationship,
    Rule,
    ScanFailedError,
)
from tessera.core import NotFoundError, ValidationError
from tessera.core.embedded import RedisServer
from tessera.governance import GovernanceSettings, governance_binding
from tessera.testing import RunningService, serve_in_process

SCHEMA = {
    "type": "object",
    "required": ["id", "status"],
    "properties": {
        "id": {"type": "integer"},
        "status": {"type": "string", "enum": ["new", "paid"]},
        "email": {"type": "string", "pattern": "^[^@]+@[^@]+$"},
        "age": {"type": "integer"},
        "at": {"type": "string", "format": "date-time"},
    },
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def scan_service(governance_etcd, redis_server: RedisServer) -> AsyncIterator[RunningService]:
    settings = GovernanceSettings(
        port=0, metrics_port=None, redis_url=redis_server.url, scan_sample_rows=3
    )
    async with serve_in_process([governance_binding(governance_etcd, settings)], settings) as svc:
        yield svc


@pytest_asyncio.fixture(loop_scope="session")
async def gov(scan_service: RunningService) -> AsyncIterator[GovernanceClient]:
    async with GovernanceClient.connect(scan_service.server.address) as client:
        yield client


async def test_scan_of_a_csv_reports_every_check(gov, start_worker, tmp_path, name):
    await gov.push_contract(name, SCHEMA)
    await gov.put_rule_set(name, [Rule(name="adult", expression="record.age >= 18")])
    data = tmp_path / "orders.csv"
    data.write_text(
        "id,status,email,age,at\n"
        "1,new,a@b,30,2024-01-01T00:00:00Z\n"
        "2,lost,nope,x,2024-02-01T00:00:00Z\n"
        "2,,a@b,10,\n"
        "3,paid,c@d,40,2024-03-01T10:00:00+02:00\n"
    )
    worker = start_worker()
    seen: list[int] = []
    scan_id = await gov.start_scan(
        name,
        str(data),
        rule_set=name,
        unique_fields=["id"],
        freshness_field="at",
        freshness_sla_s=3600,
        chunk_rows=2,
    )
    scan = await gov.wait_for_scan(scan_id, on_progress=seen.append, poll_s=0.1, timeout_s=60)
    assert scan.state == "SUCCEEDED", worker.log()
    report = scan.report
    assert report is not None
    assert (report.rows, report.failing_rows) == (4, 2)
    fields = {f.field: (f.nulls, f.missing, f.invalid, f.duplicates) for f in report.fields}
    assert fields == {
        "id": (0, 0, 0, 1),
        "status": (1, 0, 1, 0),
        "email": (0, 0, 1, 0),
        "age": (0, 0, 1, 0),
        "at": (1, 0, 0, 0),
    }
    assert [(r.rule, r.failed, r.errored) for r in report.rules] == [("adult", 1, 1)]
    assert report.freshness is not None
    assert report.freshness.latest == "2024-03-01T08:00:00Z"
    assert not report.freshness.fresh
    assert [sample.row for sample in report.samples] == [1, 2]
    assert "id: duplicate" in report.samples[1].problems
    assert seen[-1:] == [4]
    listed = await gov.list_scans()
    assert scan_id in [item.scan_id for item in listed]


async def test_scan_of_json_lines_checks_referential_integrity(gov, start_worker, tmp_path, name):
    customers, orders = f"{name}-customers", f"{name}-orders"
    await gov.push_contract(
        customers, {"type": "object", "properties": {"cid": {"type": "integer"}}}
    )
    await gov.push_contract(
        orders,
        {"type": "object", "properties": {"oid": {"type": "integer"}, "cid": {"type": "integer"}}},
    )
    await gov.upsert_entity(Entity(name=customers, subject=customers, key=("cid",)))
    await gov.upsert_entity(Entity(name=orders, subject=orders, key=("oid",)))
    await gov.upsert_relationship(
        Relationship(
            name=f"{name}-placed",
            cardinality="ONE_TO_MANY",
            from_entity=orders,
            to_entity=customers,
            from_fields=("cid",),
        )
    )
    parent = tmp_path / "customers.jsonl"
    parent.write_text("".join(json.dumps({"cid": cid}) + "\n" for cid in (1, 2)))
    child = tmp_path / "orders.jsonl"
    rows = [{"oid": 1, "cid": 1}, {"oid": 2, "cid": 9}, {"oid": 2, "cid": None}, {"oid": 3}]
    child.write_text("".join(json.dumps(row) + "\n" for row in rows))
    start_worker()
    scan_id = await gov.start_scan(orders, str(child), references={customers: str(parent)})
    scan = await gov.wait_for_scan(scan_id, timeout_s=60)
    assert scan.report is not None
    assert [(r.relationship, r.violations) for r in scan.report.references] == [
        (f"{name}-placed", 1)
    ]
    # The entity's key is checked for duplicates by default.
    fields = {f.field: (f.nulls, f.missing, f.duplicates) for f in scan.report.fields}
    assert fields == {"oid": (0, 0, 1), "cid": (1, 1, 0)}


async def test_scan_of_an_unreadable_file_fails_with_the_reason(gov, start_worker, tmp_path, name):
    await gov.push_contract(name, SCHEMA)
    data = tmp_path / "broken.jsonl"
    data.write_text('{"id": 1}\nnot json\n')
    start_worker()
    scan_id = await gov.start_scan(name, str(data))
    with pytest.raises(ScanFailedError, match="row 1 is not JSON"):
        await gov.wait_for_scan(scan_id, timeout_s=60)


async def test_start_scan_bad_input_names_the_field(gov, tmp_path, name):
    with pytest.raises(ValidationError) as missing:
        await gov.start_scan(name, str(tmp_path / "absent.csv"))
    assert [v.field for v in missing.value.violations] == ["dataset.file.path"]
    data = tmp_path / "x.csv"
    data.write_text("id\n1\n")
    with pytest.raises(NotFoundError, match=name):
        await gov.start_scan(name, str(data))
    await gov.push_contract(name, SCHEMA)
    with pytest.raises(ValidationError) as unknown:
        await gov.start_scan(name, str(data), unique_fields=["nope"])
    assert [v.field for v in unknown.value.violations] == ["unique_fields[0]"]
    with pytest.raises(ValidationError) as suffix:
        await gov.start_scan(name, str(tmp_path / "x.txt"))
    assert [v.field for v in suffix.value.violations] == ["dataset.file.format"]
    with pytest.raises(NotFoundError):
        await gov.get_scan("no-such-scan")


async def test_scan_of_a_killed_worker_is_picked_up_again_and_completes(
    gov, start_worker, tmp_path, name
):
    await gov.push_contract(name, SCHEMA)
    await gov.put_rule_set(name, [Rule(name="adult", expression="record.age >= 18")])
    rows = 200_000
    data = tmp_path / "big.csv"
    with data.open("w") as out:
        out.write("id,status,email,age,at\n")
        # Each id twice, half the file apart: the second half is all duplicates.
        out.writelines(
            f"{i % (rows // 2)},new,a@b,{i % 90},2024-01-01T00:00:00Z\n" for i in range(rows)
        )
    lost = start_worker()
    scan_id = await gov.start_scan(
        name, str(data), rule_set=name, unique_fields=["id"], chunk_rows=5_000
    )
    deadline = time.monotonic() + 60
    while (await gov.get_scan(scan_id)).rows_done == 0:
        assert time.monotonic() < deadline, lost.log()
        await asyncio.sleep(0.05)
    lost.kill()
    progress_at_kill = (await gov.get_scan(scan_id)).rows_done
    assert 0 < progress_at_kill < rows

    rescuer = start_worker()
    scan = await gov.wait_for_scan(scan_id, timeout_s=90, poll_s=0.2)
    assert scan.state == "SUCCEEDED", rescuer.log()
    assert scan.attempt == 2
    # The rescuer resumed after the last chunk the lost worker checkpointed, not from row 0.
    assert scan.resumed_from_row == progress_at_kill
    assert scan.report is not None
    assert scan.report.rows == rows
    too_young = sum(1 for i in range(rows) if i % 90 < 18)
    assert [(r.rule, r.failed) for r in scan.report.rules] == [("adult", too_young)]
    # The uniqueness set rebuilt from the checkpointed chunks holds exactly the ids read before
    # the resume point: none of the second half is missed, none of the first half is flagged.
    assert {f.field: f.duplicates for f in scan.report.fields}["id"] == rows // 2


async def test_cli_scan_start_status_report(gov, scan_service, start_worker, tmp_path, name):
    await gov.push_contract(name, SCHEMA)
    data = tmp_path / "orders.jsonl"
    data.write_text('{"id": 1, "status": "new"}\n{"id": 2, "status": "gone"}\n')
    start_worker()
    target = ["--target", scan_service.server.address]

    def tessera(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, list(args))
        return result.exit_code, result.output

    code, out = await asyncio.to_thread(tessera, "gov", "scan", "start", name, str(data), *target)
    assert code == 1, out  # one failing row
    scan_id = re.search(r"scan (\w+) started", out).group(1)
    assert "2 rows, 1 failing" in out
    assert "status: invalid" in out
    code, out = await asyncio.to_thread(tessera, "gov", "scan", "status", scan_id, *target)
    assert code == 0
    assert "SUCCEEDED" in out
    code, out = await asyncio.to_thread(
        tessera, "gov", "scan", "report", scan_id, "--json", *target
    )
    assert code == 1
    report = json.loads(out)
    assert (report["rows"], report["failing_rows"]) == (2, 1)
    assert report["fields"][1] == {
        "field": "status",
        "nulls": 0,
        "missing": 0,
        "invalid": 1,
        "duplicates": 0,
        "required": True,
    }
