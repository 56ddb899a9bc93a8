from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from pathlib import Path

from tessera.client.lock import Leader, LockClient
from tessera.testing import RunningService

LEADER_SCRIPT = Path(__file__).with_name("lock_paused_leader.py")


async def test_lock_paused_leader_is_replaced_told_and_cannot_proclaim(
    lock_service: RunningService, lock_client: LockClient
) -> None:
    name = f"paused-leader/{uuid.uuid4().hex}"
    leader = await asyncio.create_subprocess_exec(
        sys.executable,
        str(LEADER_SCRIPT),
        lock_service.server.address,
        name,
        stdout=asyncio.subprocess.PIPE,
    )
    assert leader.stdout is not None
    try:
        async with asyncio.timeout(30):
            kind, token = (await leader.stdout.readline()).decode().split()
            assert kind == "elected"
            assert (await leader.stdout.readline()).decode().split()[:2] == ["tick", "0"]
        os.kill(leader.pid, signal.SIGSTOP)
        async with lock_client.campaign(name, b"successor", ttl=5, wait=20) as leading:
            assert leading.token > int(token)
            assert await lock_client.leader(name) == Leader(
                leading.session.id, leading.token, b"successor"
            )
            resumed_at = time.monotonic()
            os.kill(leader.pid, signal.SIGCONT)
            async with asyncio.timeout(30):
                output, _ = await leader.communicate()
            # The stale leader's proclaim changed nothing.
            assert (await lock_client.leader(name)) == Leader(
                leading.session.id, leading.token, b"successor"
            )
        assert leader.returncode == 0
    finally:
        if leader.returncode is None:
            leader.kill()
            await leader.wait()
    lines = output.decode().splitlines()
    ticks_after_resume = [
        line.split()
        for line in lines
        if line.startswith("tick") and float(line.split()[2]) > resumed_at
    ]
    # Its very first check after resuming saw the loss, before it could act as leader.
    assert ticks_after_resume[0][1] == "1"
    assert lines[-1] == "proclaim refused"
