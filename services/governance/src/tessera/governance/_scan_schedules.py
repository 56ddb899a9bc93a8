"""Scheduled scans: definitions in etcd, started by a beat-driven task when they are due."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aetcd import transactions
from google.protobuf import json_format

from tessera.core import BackendError, TesseraError
from tessera.core.etcd import EtcdClient
from tessera.governance import _keys
from tessera.governance._scan_requests import ResolvedScan, ScanRequests
from tessera.governance._scan_store import ScanStore
from tessera.governance._transactions import commit
from tessera.proto.governance.v1 import scans_pb2 as pb

_log = structlog.get_logger("tessera.governance.scans")
#: Shortest interval of a schedule, in seconds.
MIN_EVERY_S = 1.0

#: Sends the scan task for a scan id; blocking (kombu), so it is called in a thread.
SendScan = Callable[[str], None]


class ScanStarter:
    """Stores a resolved scan PENDING and sends it to queue `governance`.

    Args:
        scans: Where scans live.
        send: Sends the task (blocking; called in a thread).

    """

    def __init__(self, scans: ScanStore, send: SendScan) -> None:
        self._scans = scans
        self._send = send

    async def start(self, resolved: ResolvedScan, schedule: str = "") -> str:
        """Store the scan and send it; return its id.

        Raises:
            BackendError: etcd failed, or the broker did (the scan is then stored FAILED).

        """
        scan_id = uuid.uuid4().hex
        summary = {**resolved.summary, "schedule": schedule}
        await self._scans.create(scan_id, summary, resolved.spec.to_dict())
        try:
            await asyncio.to_thread(self._send, scan_id)
        except Exception as error:  # kombu raises many kinds; all mean the broker failed
            message = f"could not queue scan {scan_id}: {error}"
            await self._scans.fail_unsent(scan_id, message)
            raise BackendError(message, backend="redis") from error
        return scan_id


@dataclass(frozen=True, slots=True)
class StoredSchedule:
    """A schedule as read from etcd, with the revision of its key."""

    record: dict[str, Any]
    revision: int

    @property
    def request(self) -> pb.StartScanRequest:
        """The scan it starts."""
        return json_format.ParseDict(self.record["scan"], pb.StartScanRequest())


class ScheduleStore:
    """Scan schedules in etcd under `/tessera/governance/schedules/<name>` (one JSON value each).

    Args:
        etcd: A connected client.

    """

    def __init__(self, etcd: EtcdClient) -> None:
        self._etcd = etcd

    async def put(
        self, name: str, request: pb.StartScanRequest, every_s: float, now: float
    ) -> dict[str, Any]:
        """Create or replace a schedule; its first run is `every_s` after `now`."""
        record = {
            "name": name,
            "scan": json_format.MessageToDict(request, preserving_proto_field_name=True),
            "every_s": every_s,
            "next_run_at": now + every_s,
            "last_scan_id": "",
            "last_run_at": 0.0,
            "last_error": "",
        }
        await self._etcd.put(_keys.schedule(name), json.dumps(record).encode())
        return record

    async def list(self) -> list[StoredSchedule]:
        """Return every schedule, by name."""
        snapshot = await self._etcd.get_prefix(_keys.SCHEDULES)
        found = [
            StoredSchedule(json.loads(item.value), item.mod_revision) for item in snapshot.items
        ]
        return sorted(found, key=lambda schedule: schedule.record["name"])

    async def delete(self, name: str) -> bool:
        """Delete a schedule; whether it existed."""
        return bool(await self._etcd.delete(_keys.schedule(name)))

    async def replace(self, stored: StoredSchedule, changes: dict[str, Any]) -> int | None:
        """Write changes unless the schedule changed since read; return the new revision.

        Returns:
            None when someone else wrote or deleted it in between.

        """
        key = _keys.schedule(stored.record["name"])
        value = json.dumps({**stored.record, **changes}).encode()
        compare = [transactions.Mod(key) == stored.revision]
        if not await commit(self._etcd, compare, [transactions.Put(key.encode(), value)]):
            return None
        item = await self._etcd.get(key)
        return None if item is None else item.mod_revision


def next_run(next_run_at: float, every_s: float, now: float) -> float:
    """Return the first run time after `now` on the schedule's grid (missed runs are skipped)."""
    missed = math.floor((now - next_run_at) / every_s) + 1
    return next_run_at + max(1, missed) * every_s


async def start_due_scans(
    schedules: ScheduleStore, requests: ScanRequests, starter: ScanStarter, now: float
) -> list[str]:
    """Start a scan for every schedule due at `now`; return the scan ids started.

    Each due schedule is first moved to its next run by a compare-and-swap on its key, and only
    the caller whose swap succeeds starts the scan: two beats, or a tick that runs twice, start
    it once. A run whose scan cannot start (the contract is gone, the file too) is skipped and
    its reason kept in `last_error`; the schedule stays. At most one run per schedule and tick
    (runs missed while nothing ticked are not made up).

    Raises:
        BackendError: etcd failed.

    """
    started = []
    for stored in await schedules.list():
        record = stored.record
        if record["next_run_at"] > now:
            continue
        upcoming = next_run(record["next_run_at"], record["every_s"], now)
        revision = await schedules.replace(stored, {"next_run_at": upcoming})
        if revision is None:
            continue  # another tick took this run, or the schedule was just rewritten
        claimed = StoredSchedule({**record, "next_run_at": upcoming}, revision)
        outcome: dict[str, Any] = {"last_run_at": now, "last_error": ""}
        try:
            resolved = await requests.resolve(stored.request)
            scan_id = await starter.start(resolved, schedule=record["name"])
        except TesseraError as error:
            _log.warning("scheduled_scan_not_started", schedule=record["name"], error=error.message)
            outcome["last_error"] = error.message
        else:
            outcome["last_scan_id"] = scan_id
            started.append(scan_id)
        await schedules.replace(claimed, outcome)
    return started


def schedule_message(record: dict[str, Any]) -> pb.ScanSchedule:
    """Build a `ScanSchedule` message from a stored schedule."""
    return pb.ScanSchedule(
        name=record["name"],
        scan=json_format.ParseDict(record["scan"], pb.StartScanRequest()),
        every_s=record["every_s"],
        next_run_at=record["next_run_at"],
        last_scan_id=record["last_scan_id"],
        last_run_at=record["last_run_at"],
        last_error=record["last_error"],
    )
