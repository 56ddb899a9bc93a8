"""Scheduled scans: the due check against a real etcd, then a real beat and worker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from typer.testing import CliRunner

from tessera.client.cli._app import app
from tessera.client.cli._governance import dataset_source
from tessera.client.governance import GovernanceClient, Table
from tessera.core import ValidationError
from tessera.core.embedded import EtcdServer, RedisServer
from tessera.governance import GovernanceSettings, governance_binding
from tessera.governance._contract_store import ContractStore
from tessera.governance._model_store import ModelStore
from tessera.governance._rule_set_store import RuleSetStore
from tessera.governance._scan_requests import ScanRequests
from tessera.governance._scan_schedules import (
    ScanStarter,
    ScheduleStore,
    next_run,
    start_due_scans,
)
from tessera.governance._scan_store import ScanStore
from tessera.testing import RunningService, serve_in_process

SCHEMA = {"type": "object", "properties": {"id": {"type": "integer"}}}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def schedule_service(
    governance_etcd, redis_server: RedisServer
) -> AsyncIterator[RunningService]:
    settings = GovernanceSettings(port=0, metrics_port=None, redis_url=redis_server.url)
    async with serve_in_process([governance_binding(governance_etcd, settings)], settings) as svc:
        yield svc


@pytest_asyncio.fixture(loop_scope="session")
async def gov(schedule_service: RunningService) -> AsyncIterator[GovernanceClient]:
    async with GovernanceClient.connect(schedule_service.server.address) as client:
        yield client


def test_next_run_stays_on_the_grid_and_skips_missed_runs():
    assert next_run(100.0, 10.0, 100.0) == 110.0
    assert next_run(100.0, 10.0, 105.0) == 110.0
    assert next_run(100.0, 10.0, 135.0) == 140.0  # runs at 110, 120, 130 were missed: one run


async def test_a_due_schedule_starts_one_scan_however_many_ticks_race(
    gov, governance_etcd, tmp_path, name
):
    await gov.push_contract(name, SCHEMA)
    data = tmp_path / "rows.jsonl"
    data.write_text('{"id": 1}\n')
    put_at = time.time()
    schedule = await gov.put_scan_schedule(name, 60, name, str(data))
    assert schedule.dataset == f"file:{data}"
    assert put_at + 60 <= schedule.next_run_at <= time.time() + 60

    sent: list[str] = []
    requests = ScanRequests(
        ContractStore(governance_etcd, GovernanceSettings().default_compatibility),
        RuleSetStore(governance_etcd),
        ModelStore(governance_etcd),
        {},
        1000,
        5,
    )
    starter = ScanStarter(ScanStore(governance_etcd), sent.append)
    schedules = ScheduleStore(governance_etcd)

    async def tick(at: float) -> list[str]:
        return await start_due_scans(schedules, requests, starter, at)

    assert await tick(schedule.next_run_at - 1) == []  # not due yet
    due = schedule.next_run_at + 1
    # Three ticks at once (two beats, a redelivered tick): exactly one starts the scan.
    ticks = await asyncio.gather(*(tick(due) for _ in range(3)))
    started = [scan_id for ids in ticks for scan_id in ids]
    assert len(started) == 1
    assert sent == started
    assert await tick(due) == []  # the run is taken; the next is a minute later
    scan = await gov.get_scan(started[0])
    assert (scan.schedule, scan.subject, scan.state) == (name, name, "PENDING")
    (listed,) = [s for s in await gov.list_scan_schedules() if s.name == name]
    assert listed.last_scan_id == started[0]
    assert listed.next_run_at == schedule.next_run_at + 60
    assert listed.last_error == ""

    # A run whose scan cannot start keeps the reason and the schedule.
    data.unlink()
    assert await tick(listed.next_run_at) == []
    (failed,) = [s for s in await gov.list_scan_schedules() if s.name == name]
    assert "no such file" in failed.last_error
    assert failed.last_scan_id == started[0]
    assert await gov.delete_scan_schedule(name)
    assert not await gov.delete_scan_schedule(name)


async def test_put_scan_schedule_bad_input_names_the_field(gov, tmp_path, name):
    await gov.push_contract(name, SCHEMA)
    data = tmp_path / "rows.csv"
    data.write_text("id\n1\n")
    cases = {
        "schedule.every_s": gov.put_scan_schedule(name, 0.5, name, str(data)),
        "schedule.scan.dataset.file.path": gov.put_scan_schedule(
            name, 5, name, str(tmp_path / "absent.csv")
        ),
        "schedule.scan.unique_fields[0]": gov.put_scan_schedule(
            name, 5, name, str(data), unique_fields=["nope"]
        ),
        "schedule.name": gov.put_scan_schedule("bad name!", 5, name, str(data)),
    }
    for field, call in cases.items():
        with pytest.raises(ValidationError) as refused:
            await call
        assert [v.field for v in refused.value.violations] == [field]
    assert name not in [s.name for s in await gov.list_scan_schedules()]


@pytest.fixture
def beat(etcd_server: EtcdServer, redis_server: RedisServer, tmp_path) -> Iterator[Path]:
    """Run `tessera-beat` ticking the schedules every second; yield its log file."""
    env = {
        **os.environ,
        "TESSERA_REDIS_URL": redis_server.url,
        "TESSERA_ETCD_ENDPOINTS": etcd_server.endpoint,
        "TESSERA_SCAN_SCHEDULE_TICK_S": "1",
        "TESSERA_LOG_FORMAT": "console",
    }
    log = tmp_path / "beat.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tessera.core.jobs", "beat", "--data-dir", str(tmp_path)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    yield log
    process.terminate()
    process.wait(15)


async def test_beat_starts_a_schedule_written_while_it_runs(
    gov, beat, start_worker, tmp_path, name
):
    worker = start_worker()
    await gov.push_contract(name, SCHEMA)
    data = tmp_path / "rows.jsonl"
    data.write_text('{"id": 1}\n{"id": "x"}\n')
    # Written after beat started: beat's own schedule is only the tick, which reads etcd.
    await gov.put_scan_schedule(name, 1, name, str(data))
    deadline = time.monotonic() + 60
    while True:
        scans = [s for s in await gov.list_scans() if s.schedule == name]
        if any(s.state == "SUCCEEDED" for s in scans):
            break
        assert time.monotonic() < deadline, beat.read_text()[-2000:] + worker.log()
        await asyncio.sleep(0.25)
    succeeded = next(s for s in scans if s.state == "SUCCEEDED")
    report = (await gov.get_scan(succeeded.scan_id)).report
    assert report is not None
    assert (report.rows, report.failing_rows) == (2, 1)
    assert await gov.delete_scan_schedule(name)


def test_cli_dataset_argument_names_a_file_or_a_table():
    assert dataset_source("/data/x.csv") == "/data/x.csv"
    assert dataset_source("table:shop/orders") == Table("shop", "orders", "public")
    assert dataset_source("table:shop/sales.orders") == Table("shop", "orders", "sales")
    with pytest.raises(ValidationError) as refused:
        dataset_source("table:orders")
    assert [v.field for v in refused.value.violations] == ["dataset"]


async def test_cli_scan_schedule_put_ls_rm(gov, schedule_service, tmp_path, name):
    await gov.push_contract(name, SCHEMA)
    data = tmp_path / "rows.csv"
    data.write_text("id\n1\n")
    target = ["--target", schedule_service.server.address]

    def tessera(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["gov", "scan", "schedule", *args, *target])
        return result.exit_code, result.output

    code, out = await asyncio.to_thread(
        tessera, "put", name, name, str(data), "--every-s", "3600", "--unique", "id"
    )
    assert code == 0, out
    assert f"schedule {name}: every 3600 s" in out
    code, out = await asyncio.to_thread(tessera, "ls", "--json")
    assert code == 0, out
    (listed,) = [item for item in json.loads(out) if item["name"] == name]
    assert (listed["subject"], listed["dataset"]) == (name, f"file:{data}")
    assert await asyncio.to_thread(tessera, "rm", name) == (0, f"schedule {name} deleted\n")
    code, _ = await asyncio.to_thread(tessera, "rm", name)
    assert code == 1
