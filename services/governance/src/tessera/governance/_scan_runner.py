from __future__ import annotations

import asyncio

import structlog

from tessera.core import TesseraError
from tessera.core.etcd import EtcdClient
from tessera.core.jobs import WorkerSettings
from tessera.governance._scan_engine import Scan, ScanSpec
from tessera.governance._scan_store import ScanStore, StaleAttemptError

_log = structlog.get_logger("tessera.governance.scans")


async def run_scan(scan_id: str, settings: WorkerSettings) -> None:
    """Run one attempt of a scan in a worker process: claim it, check every chunk, report.

    Reading and checking run in a thread, so the event loop stays free for the etcd writes, one
    per chunk. A dataset error, a bad spec or an unexpected error ends the scan FAILED with the
    reason; a stale attempt (another delivery took the scan over) stops without writing.

    Raises:
        BackendError: etcd failed; the job is retried by redelivery.

    """
    loop = asyncio.get_running_loop()
    async with EtcdClient.from_settings(settings) as etcd:
        store = ScanStore(etcd)
        try:
            claim = await store.claim(scan_id)
        except StaleAttemptError:
            return
        if claim is None:
            return  # finished already: a duplicate delivery
        spec = ScanSpec.from_dict(claim.record["spec"])
        holder = [claim]

        def progress(rows_done: int) -> None:
            update = store.progress(holder[0], rows_done)
            holder[0] = asyncio.run_coroutine_threadsafe(update, loop).result()

        try:
            report = await asyncio.to_thread(lambda: Scan(spec).run(progress))
        except StaleAttemptError:
            _log.info("scan_taken_over", scan_id=scan_id)
            return
        except TesseraError as error:
            _log.warning("scan_failed", scan_id=scan_id, error=error.message)
            await store.finish(holder[0], None, error.message)
            return
        except Exception as error:  # anything else must still end the scan, not leave it RUNNING
            _log.exception("scan_crashed", scan_id=scan_id)
            await store.finish(holder[0], None, f"internal error: {error!r}")
            return
        await store.finish(holder[0], report)
        _log.info("scan_succeeded", scan_id=scan_id, rows=report["rows"])
