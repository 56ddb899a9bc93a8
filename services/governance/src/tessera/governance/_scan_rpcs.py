from __future__ import annotations

import json
import time
from typing import Any

from celery import Celery
from google.protobuf import json_format

from tessera.core import FieldViolation, ValidationError
from tessera.core.jobs import WorkerSettings, create_celery_app
from tessera.core.server import ServicerContext
from tessera.governance._scan_requests import ScanRequests
from tessera.governance._scan_schedules import (
    MIN_EVERY_S,
    ScanStarter,
    ScheduleStore,
    schedule_message,
)
from tessera.governance._scan_store import ScanStore
from tessera.governance._schema import check_name
from tessera.governance._settings import GovernanceSettings
from tessera.governance.jobs import SCAN_TASK
from tessera.proto.governance.v1 import scans_pb2 as pb


class ScanRpcs:
    """The scan part of the Governance servicer: start scans, read progress and reports.

    StartScan resolves everything a worker needs (contract schema, rule set, referential checks)
    at that moment and stores it with the scan, so the scan checks exactly those versions.

    Schedules are stored here and started by the workers' `tessera.governance.schedules` task,
    which beat sends every `scan_schedule_tick_s`.

    Args:
        scans: Where scans live.
        schedules: Where scan schedules live.
        requests: Checks and resolves scan requests.
        settings: Chunk size and the broker to send jobs through.

    """

    def __init__(
        self,
        scans: ScanStore,
        schedules: ScheduleStore,
        requests: ScanRequests,
        settings: GovernanceSettings,
    ) -> None:
        self._scans = scans
        self._schedules = schedules
        self._scan_requests = requests
        self._scan_settings = settings
        self._scan_starter = ScanStarter(scans, self._send)
        self._producer: Celery | None = None

    async def StartScan(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.StartScanRequest, context: ServicerContext
    ) -> pb.StartScanResponse:
        """Check the request, store the scan PENDING and send it to queue `governance`."""
        resolved = await self._scan_requests.resolve(request)
        return pb.StartScanResponse(scan_id=await self._scan_starter.start(resolved))

    async def GetScan(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.GetScanRequest, context: ServicerContext
    ) -> pb.GetScanResponse:
        """Return a scan's state, progress and (once it succeeded) report."""
        if not request.scan_id:
            raise ValidationError.for_field("scan_id", "must not be empty")
        return pb.GetScanResponse(scan=scan_message(await self._scans.get(request.scan_id)))

    async def ListScans(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.ListScansRequest, context: ServicerContext
    ) -> pb.ListScansResponse:
        """List every scan, newest first, without reports."""
        records = await self._scans.list()
        return pb.ListScansResponse(
            scans=[scan_message({**record, "report": None}) for record in records]
        )

    async def PutScanSchedule(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.PutScanScheduleRequest, context: ServicerContext
    ) -> pb.PutScanScheduleResponse:
        """Check the scan as StartScan would, then store the schedule (replacing one)."""
        schedule = request.schedule
        name = check_name("schedule.name", schedule.name)
        if not schedule.every_s >= MIN_EVERY_S:
            raise ValidationError.for_field(
                "schedule.every_s", f"must be at least {MIN_EVERY_S:g} second"
            )
        if not schedule.HasField("scan"):
            raise ValidationError.for_field("schedule.scan", "must give the scan to run")
        try:
            await self._scan_requests.resolve(schedule.scan)
        except ValidationError as error:
            raise ValidationError(
                FieldViolation(f"schedule.scan.{violation.field}", violation.description)
                for violation in error.violations
            ) from None
        scan = pb.StartScanRequest()
        scan.CopyFrom(schedule.scan)
        # Fixed now, so every run uses the chunk size of the service that accepted it.
        scan.chunk_rows = scan.chunk_rows or self._scan_settings.scan_chunk_rows
        record = await self._schedules.put(name, scan, schedule.every_s, time.time())
        return pb.PutScanScheduleResponse(schedule=schedule_message(record))

    async def ListScanSchedules(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.ListScanSchedulesRequest, context: ServicerContext
    ) -> pb.ListScanSchedulesResponse:
        """List every scan schedule, by name."""
        stored = await self._schedules.list()
        return pb.ListScanSchedulesResponse(
            schedules=[schedule_message(item.record) for item in stored]
        )

    async def DeleteScanSchedule(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.DeleteScanScheduleRequest, context: ServicerContext
    ) -> pb.DeleteScanScheduleResponse:
        """Delete a scan schedule; scans it started stay."""
        name = check_name("name", request.name)
        return pb.DeleteScanScheduleResponse(deleted=await self._schedules.delete(name))

    def _send(self, scan_id: str) -> None:
        # Runs in a thread: kombu's publish blocks.
        if self._producer is None:
            self._producer = create_celery_app(
                WorkerSettings(redis_url=self._scan_settings.redis_url), queues=()
            )
        self._producer.send_task(SCAN_TASK, args=[scan_id])


def scan_message(record: dict[str, Any]) -> pb.Scan:
    """Build a `Scan` message from a stored scan record."""
    report = record.get("report")
    message = pb.Scan(
        scan_id=record["scan_id"],
        state=pb.ScanState.Value(f"SCAN_{record['state']}"),
        rows_done=record["rows_done"],
        attempt=record["attempt"],
        error=record["error"],
        subject=record["subject"],
        version=record["version"],
        rule_set=record["rule_set"],
        rule_set_version=record["rule_set_version"],
        dataset=record["dataset"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
        resumed_from_row=record.get("resumed_from_row", 0),
        schedule=record.get("schedule", ""),
    )
    if report is not None:
        shown = {**report, "freshness": report["freshness"] or {}}
        json_format.ParseDict(json.loads(json.dumps(shown)), message.report)
    return message
