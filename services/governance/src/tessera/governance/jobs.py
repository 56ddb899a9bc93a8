"""Background jobs of the governance service (queue `governance`): scans.

Registered through the entry point `tessera.jobs: governance = "tessera.governance.jobs:register"`;
run them with `tessera-worker -Q governance`.
"""

from __future__ import annotations

import asyncio

from tessera.core.jobs import JobContext
from tessera.governance._scan_runner import run_scan

#: Name of the scan task; its only argument is the scan id.
SCAN_TASK = "tessera.governance.scan"


def register(context: JobContext) -> None:
    """Define `tessera.governance.scan(scan_id)`.

    The task is idempotent: a finished scan is left alone, and a redelivered one (its worker
    died) restarts from row 0 as a new attempt, which takes the scan over from the old one.
    """
    settings = context.settings

    @context.task("scan", ignore_result=True)
    def scan(scan_id: str) -> None:
        asyncio.run(run_scan(scan_id, settings))
