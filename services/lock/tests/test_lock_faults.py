from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from pathlib import Path

from tessera.client.lock import FencedResource, LockClient, StaleTokenError
from tessera.testing import (
    ACQUIRE,
    OK,
    RELEASE,
    History,
    Operation,
    RunningService,
    check_exclusive_holds,
    check_fencing_tokens,
)

HOLDER_SCRIPT = Path(__file__).with_name("lock_paused_holder.py")


async def test_lock_paused_holder_is_fenced_off_and_told_of_its_loss(
    lock_service: RunningService, lock_client: LockClient
) -> None:
    name = f"paused/{uuid.uuid4().hex}"
    history = History()
    resource = FencedResource()
    started = time.monotonic()
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HOLDER_SCRIPT),
        lock_service.server.address,
        name,
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdout is not None
    try:
        async with asyncio.timeout(30):
            kind, token, acquired_at = (await holder.stdout.readline()).decode().split()
        assert kind == "acquired"
        stale_token = int(token)
        history.record(
            Operation("paused", ACQUIRE, started, float(acquired_at), OK, stale_token, name)
        )
        async with asyncio.timeout(10):
            first_write = (await holder.stdout.readline()).decode().split()
        assert first_write[:3] == ["write", token, "0"]
        resource.admit(stale_token)

        os.kill(holder.pid, signal.SIGSTOP)
        invocation = history.invoke("successor", ACQUIRE, key=name)
        async with lock_client.lock(name, ttl=5, wait=20) as held:
            invocation.complete(OK, token=held.token)
            assert held.token > stale_token
            resource.admit(held.token)
            resumed_at = time.monotonic()
            os.kill(holder.pid, signal.SIGCONT)
            async with asyncio.timeout(30):
                output, _ = await holder.communicate()
            release = history.invoke("successor", RELEASE, key=name)
        release.complete(OK)
        assert holder.returncode == 0
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()

    writes_after_resume = [
        line.split()
        for line in output.decode().splitlines()
        if line.startswith("write") and float(line.split()[3]) > resumed_at
    ]
    assert len(writes_after_resume) >= 10
    rejected = 0
    for _, token, lost, _ in writes_after_resume:
        assert lost == "1", "the paused holder's SDK did not report the loss on resuming"
        try:
            resource.admit(int(token))
        except StaleTokenError:
            rejected += 1
    assert rejected == len(writes_after_resume)
    assert check_exclusive_holds(history) == []
    assert check_fencing_tokens(history) == []
