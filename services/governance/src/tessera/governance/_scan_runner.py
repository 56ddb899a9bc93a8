from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import structlog
from pydantic import SecretStr

from tessera.core import TesseraError
from tessera.core.etcd import EtcdClient
from tessera.core.jobs import WorkerSettings
from tessera.core.redis import connect_redis
from tessera.governance._scan_engine import Checkpoint, Resume, Scan, ScanSpec
from tessera.governance._scan_seen import SeenValues, decode_seen, encode_seen
from tessera.governance._scan_store import ScanClaim, ScanStore, StaleAttemptError

_log = structlog.get_logger("tessera.governance.scans")


async def run_scan(
    scan_id: str, settings: WorkerSettings, connections: Mapping[str, SecretStr]
) -> None:
    """Run one attempt of a scan in a worker process: claim it, check every chunk, report.

    The attempt resumes after the last chunk an earlier attempt checkpointed: after each chunk
    the chunk's seen values (uniqueness sets) go to Redis (`SeenValues`), then the tallies and
    the position to the scan's etcd key, conditioned on this attempt still owning the scan.
    Reading and checking run in a thread, so the event loop stays free for those writes. A
    dataset error, a bad spec or an unexpected error ends the scan FAILED with the reason; a
    stale attempt (another delivery took the scan over) stops without writing.

    Args:
        scan_id: The scan.
        settings: etcd and Redis.
        connections: DSNs of the PostgreSQL connections tables are read through, by name.

    Raises:
        BackendError: etcd or Redis failed; the job is retried by redelivery.

    """
    redis = connect_redis(settings)
    try:
        async with EtcdClient.from_settings(settings) as etcd:
            await _attempt(scan_id, ScanStore(etcd), SeenValues(redis), connections)
    finally:
        await redis.aclose()


async def _attempt(
    scan_id: str, store: ScanStore, seen: SeenValues, connections: Mapping[str, SecretStr]
) -> None:
    loop = asyncio.get_running_loop()
    try:
        claim = await store.claim(scan_id)
    except StaleAttemptError:
        return
    if claim is None:
        return  # finished already: a duplicate delivery
    spec = ScanSpec.from_dict(claim.record["spec"])
    attempt = claim.record["attempt"]
    saved: dict[str, Any] | None = claim.record.get("checkpoint")
    encoded = await seen.load(scan_id, saved["segments"]) if saved else []
    if saved and encoded is None:
        _log.warning("scan_checkpoint_lost", scan_id=scan_id)
        saved, encoded = None, []
    segments: list[list[int]] = saved["segments"] if saved else []
    chunks = saved["chunks"] if saved else 0
    holder = [claim]

    def on_chunk(checkpoint: Checkpoint) -> None:
        # Runs in the scan's thread: encode there, write through the loop, wait for both.
        nonlocal chunks
        if checkpoint.seen:
            data = encode_seen(checkpoint.seen)
            stored = seen.put(scan_id, attempt, chunks, data)
            asyncio.run_coroutine_threadsafe(stored, loop).result()
            if segments and segments[-1][0] == attempt and segments[-1][2] == chunks:
                segments[-1][2] += 1
            else:
                segments.append([attempt, chunks, chunks + 1])
        chunks += 1
        saved = {"state": checkpoint.state, "segments": segments, "chunks": chunks}
        update = store.checkpoint(holder[0], saved)
        holder[0] = asyncio.run_coroutine_threadsafe(update, loop).result()

    def scan() -> dict[str, Any]:
        resume = None
        if saved is not None:
            resume = Resume(saved["state"], [decode_seen(data) for data in encoded or ()])
        return Scan(spec, connections=connections, resume=resume).run(on_chunk)

    try:
        report = await asyncio.to_thread(scan)
    except StaleAttemptError:
        _log.info("scan_taken_over", scan_id=scan_id)
        return
    except TesseraError as error:
        _log.warning("scan_failed", scan_id=scan_id, error=error.message)
        await _finish(store, seen, holder[0], None, error.message)
        return
    except Exception as error:  # anything else must still end the scan, not leave it RUNNING
        _log.exception("scan_crashed", scan_id=scan_id)
        await _finish(store, seen, holder[0], None, f"internal error: {error!r}")
        return
    await _finish(store, seen, holder[0], report)
    _log.info("scan_succeeded", scan_id=scan_id, rows=report["rows"], attempt=attempt)


async def _finish(
    store: ScanStore,
    seen: SeenValues,
    claim: ScanClaim,
    report: dict[str, Any] | None,
    error: str = "",
) -> None:
    await store.finish(claim, report, error)
    await seen.drop(claim.record["scan_id"])
