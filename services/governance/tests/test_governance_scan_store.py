"""The scan store on a real etcd: attempts take a scan over, and only the owner writes."""

from __future__ import annotations

import uuid

import pytest

from tessera.core import NotFoundError
from tessera.governance._scan_store import ScanStore, StaleAttemptError

SUMMARY = {"subject": "s", "version": 1, "rule_set": "", "rule_set_version": 0, "dataset": "x"}


def _checkpoint(rows: int) -> dict[str, object]:
    return {"state": {"rows": rows, "position": {"rows": rows, "after": None}}, "chunks": 1}


async def test_a_new_attempt_takes_the_scan_over_from_a_stale_one(governance_etcd):
    store, scan_id = ScanStore(governance_etcd), uuid.uuid4().hex
    await store.create(scan_id, SUMMARY, {"chunk_rows": 2})
    first = await store.claim(scan_id)
    assert first is not None
    first = await store.checkpoint(first, _checkpoint(10))
    # The job was redelivered: attempt 2 resumes from attempt 1's checkpoint.
    second = await store.claim(scan_id)
    assert second is not None
    assert (second.record["attempt"], second.record["rows_done"]) == (2, 10)
    assert second.record["resumed_from_row"] == 10
    assert second.record["checkpoint"] == _checkpoint(10)
    with pytest.raises(StaleAttemptError):
        await store.checkpoint(first, _checkpoint(20))
    with pytest.raises(StaleAttemptError):
        await store.finish(first, {"rows": 20})
    await store.finish(second, {"rows": 30})
    stored = await store.get(scan_id)
    assert (stored["state"], stored["attempt"], stored["rows_done"]) == ("SUCCEEDED", 2, 30)
    assert stored["report"] == {"rows": 30}
    assert stored["checkpoint"] is None  # of no use once the scan ended
    # A delivery after the end leaves the finished scan alone.
    assert await store.claim(scan_id) is None
    assert (await store.get(scan_id))["attempt"] == 2


async def test_claiming_an_unknown_scan_is_not_found(governance_etcd):
    with pytest.raises(NotFoundError):
        await ScanStore(governance_etcd).claim("nope")
