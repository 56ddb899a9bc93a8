"""Background jobs of the governance service (queue `governance`): scans and scan schedules.

Registered through the entry point `tessera.jobs: governance = "tessera.governance.jobs:register"`;
run them with `tessera-worker -Q governance` and one `tessera-beat`.
"""

from __future__ import annotations

import asyncio
import time

from tessera.core.etcd import EtcdClient
from tessera.core.jobs import JobContext
from tessera.governance._contract_store import ContractStore
from tessera.governance._model_store import ModelStore
from tessera.governance._rule_set_store import RuleSetStore
from tessera.governance._scan_requests import ScanRequests
from tessera.governance._scan_runner import run_scan
from tessera.governance._scan_schedules import (
    ScanStarter,
    ScheduleStore,
    SendScan,
    start_due_scans,
)
from tessera.governance._scan_store import ScanStore
from tessera.governance._settings import GovernanceSettings

#: Name of the scan task; its only argument is the scan id.
SCAN_TASK = "tessera.governance.scan"
#: Name of the task beat sends every `scan_schedule_tick_s` to start the due scan schedules.
SCHEDULES_TASK = "tessera.governance.schedules"


def register(context: JobContext) -> None:
    """Define `tessera.governance.scan(scan_id)` and `tessera.governance.schedules()`.

    The scan task is idempotent: a finished scan is left alone, and a redelivered one (its
    worker died) resumes after the last chunk checkpointed, as a new attempt that takes the scan
    over from the old one. Table datasets are read through `GovernanceSettings.scan_connections`
    (`TESSERA_SCAN_CONNECTIONS`), read when the task runs.

    The schedules task, which beat sends every `scan_schedule_tick_s` (`TESSERA_SCAN_SCHEDULE_
    TICK_S`, read when beat starts), reads the schedules from etcd each time, so a schedule
    written through `PutScanSchedule` is picked up without restarting beat or the workers.
    """
    settings = context.settings
    tick_s = GovernanceSettings.from_env().scan_schedule_tick_s

    @context.task("scan", ignore_result=True)
    def scan(scan_id: str) -> None:
        connections = GovernanceSettings.from_env().scan_connections
        asyncio.run(run_scan(scan_id, settings, connections))

    def send(scan_id: str) -> None:
        scan.apply_async(args=(scan_id,))

    @context.task("schedules", ignore_result=True)
    def schedules() -> None:
        asyncio.run(_start_due_scans(GovernanceSettings.from_env(), send))

    # A tick not run within one interval is dropped: the next one does the same work.
    context.schedule(SCHEDULES_TASK, SCHEDULES_TASK, every_s=tick_s)


async def _start_due_scans(settings: GovernanceSettings, send: SendScan) -> None:
    async with EtcdClient.from_settings(settings) as etcd:
        requests = ScanRequests(
            ContractStore(etcd, settings.default_compatibility),
            RuleSetStore(etcd),
            ModelStore(etcd),
            settings.scan_connections,
            settings.scan_chunk_rows,
            settings.scan_sample_rows,
        )
        starter = ScanStarter(ScanStore(etcd), send)
        await start_due_scans(ScheduleStore(etcd), requests, starter, time.time())
