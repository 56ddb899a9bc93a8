from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from aetcd import transactions

from tessera.core import NotFoundError
from tessera.core.etcd import EtcdClient
from tessera.governance import _keys
from tessera.governance._transactions import commit

PENDING, RUNNING, SUCCEEDED, FAILED = "PENDING", "RUNNING", "SUCCEEDED", "FAILED"


class StaleAttemptError(Exception):
    """Another delivery of the scan took it over; this attempt must stop writing."""


@dataclass(slots=True)
class ScanClaim:
    """One attempt's hold on a scan: the record it wrote last and that write's revision."""

    record: dict[str, Any]
    revision: int


class ScanStore:
    """Scans in etcd under `/tessera/governance/scans/<id>`: one JSON value per scan.

    The value holds the spec, the state, the attempt number, the rows done, the last checkpoint
    while it runs and, at the end, the report. A worker claims a scan by raising the attempt;
    every later write of that attempt (one per chunk) is conditioned on the key's revision being
    its own last write, so a stale attempt (its worker was presumed dead and the job redelivered)
    stops at its next chunk and exactly one report is written.

    Args:
        etcd: A connected client; safe for concurrent use from one event loop.

    """

    def __init__(self, etcd: EtcdClient) -> None:
        self._etcd = etcd

    async def create(self, scan_id: str, summary: dict[str, Any], spec: dict[str, Any]) -> None:
        """Store a new scan, PENDING."""
        now = time.time()
        record = {
            **summary,
            "scan_id": scan_id,
            "state": PENDING,
            "attempt": 0,
            "rows_done": 0,
            "error": "",
            "created_at": now,
            "updated_at": now,
            "spec": spec,
            "report": None,
            "checkpoint": None,
            "resumed_from_row": 0,
            "schedule": summary.get("schedule", ""),
        }
        await self._etcd.put(_keys.scan(scan_id), json.dumps(record).encode())

    async def fail_unsent(self, scan_id: str, error: str) -> None:
        """Mark a scan that could not be sent to the workers FAILED."""
        record = await self.get(scan_id)
        record.update(state=FAILED, error=error, updated_at=time.time())
        await self._etcd.put(_keys.scan(scan_id), json.dumps(record).encode())

    async def get(self, scan_id: str) -> dict[str, Any]:
        """Return a scan's record.

        Raises:
            NotFoundError: No such scan.

        """
        item = await self._etcd.get(_keys.scan(scan_id))
        if item is None:
            raise NotFoundError(f"no scan with id '{scan_id}'")
        record: dict[str, Any] = json.loads(item.value)
        return record

    async def list(self) -> list[dict[str, Any]]:
        """Return every scan's record, newest first."""
        snapshot = await self._etcd.get_prefix(_keys.SCANS)
        records = [json.loads(item.value) for item in snapshot.items]
        return sorted(records, key=lambda record: record["created_at"], reverse=True)

    async def claim(self, scan_id: str) -> ScanClaim | None:
        """Start a new attempt: RUNNING from the last checkpoint. None when the scan finished.

        The claim's record holds the checkpoint (`record["checkpoint"]`, None for a fresh scan)
        that an earlier attempt wrote with `checkpoint`; the new attempt resumes from it.

        Raises:
            NotFoundError: No such scan.
            StaleAttemptError: Another attempt claimed it at the same moment.

        """
        key = _keys.scan(scan_id)
        item = await self._etcd.get(key)
        if item is None:
            raise NotFoundError(f"no scan with id '{scan_id}'")
        record = json.loads(item.value)
        if record["state"] in (SUCCEEDED, FAILED):
            return None
        saved = record.get("checkpoint")
        resumed = saved["state"]["position"]["rows"] if saved else 0
        record.update(
            state=RUNNING,
            attempt=record["attempt"] + 1,
            rows_done=resumed,
            resumed_from_row=resumed,
        )
        return await self._write(ScanClaim(record, item.mod_revision), {})

    async def checkpoint(self, claim: ScanClaim, checkpoint: dict[str, Any]) -> ScanClaim:
        """Record a chunk's checkpoint and the rows done (once per chunk).

        Args:
            claim: The attempt's hold.
            checkpoint: JSON-compatible; `checkpoint["state"]["rows"]` is the rows done.

        Raises:
            StaleAttemptError: Another attempt owns the scan now.

        """
        return await self._write(
            claim, {"rows_done": checkpoint["state"]["rows"], "checkpoint": checkpoint}
        )

    async def finish(
        self, claim: ScanClaim, report: dict[str, Any] | None, error: str = ""
    ) -> ScanClaim:
        """End the attempt: SUCCEEDED with its report, or FAILED with `error`.

        Raises:
            StaleAttemptError: Another attempt owns the scan now.

        """
        state = FAILED if error else SUCCEEDED
        # The checkpoint is of no use once the scan ended; dropping it keeps the value small.
        changes: dict[str, Any] = {
            "state": state,
            "report": report,
            "error": error,
            "checkpoint": None,
        }
        if report is not None:
            changes["rows_done"] = report["rows"]
        return await self._write(claim, changes)

    async def _write(self, claim: ScanClaim, changes: dict[str, Any]) -> ScanClaim:
        key = _keys.scan(claim.record["scan_id"])
        record = {**claim.record, **changes, "updated_at": time.time()}
        compare = [transactions.Mod(key) == claim.revision]
        if not await commit(
            self._etcd, compare, [transactions.Put(key.encode(), json.dumps(record).encode())]
        ):
            raise StaleAttemptError(f"scan {claim.record['scan_id']} was taken over")
        item = await self._etcd.get(key)
        assert item is not None  # written just now; scans are never deleted
        return ScanClaim(record, item.mod_revision)
