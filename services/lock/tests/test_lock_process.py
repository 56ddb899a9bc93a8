from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from tessera.client.lock import LockClient
from tessera.core.embedded import free_port
from tessera.testing import RunningService

#: The `lock_process` fixture (conftest.py): runs a lock service process on a port.
LockProcess = Callable[[int], AbstractAsyncContextManager[asyncio.subprocess.Process]]

BIN = Path(sys.executable).parent
#: Runs argv[1:] with SIGINT's default action, whatever this process inherited.
_WITH_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


async def test_lock_service_killed_sessions_expire_and_locks_free(
    lock_process: LockProcess, lock_client: LockClient
) -> None:
    name = f"killed/{uuid.uuid4().hex}"
    port = free_port()
    async with lock_process(port) as process, LockClient.connect(f"127.0.0.1:{port}") as doomed:
        session = await doomed.open_session(2)
        held = await doomed.acquire(name, session, wait=0)
        assert held is not None
        process.kill()
        await process.wait()
        async with asyncio.timeout(10):
            await held.wait_lost()
        async with lock_client.lock(name, ttl=5, wait=10) as successor:
            assert successor.token > held.token
        await session.close()


async def test_lock_service_stops_cleanly_on_sigterm(lock_process: LockProcess) -> None:
    async with lock_process(free_port()) as process:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await process.wait() == 0


async def test_lock_cli_acquire_describe_ls_and_release_on_ctrl_c(
    lock_service: RunningService, lock_client: LockClient
) -> None:
    name = f"cli/{uuid.uuid4().hex}"
    target = lock_service.server.address
    holder = await asyncio.create_subprocess_exec(
        # Ctrl-C as a terminal delivers it: a suite started as a background job inherits an
        # ignored SIGINT, which the CLI would inherit too
        sys.executable,
        "-c",
        _WITH_DEFAULT_SIGINT,
        str(BIN / "tessera"),
        "lock",
        "acquire",
        name,
        "--hold",
        "60s",
        # Released on Ctrl-C, a voluntary release: the lock-delay must not apply.
        "--lock-delay",
        "30s",
        "--target",
        target,
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdout is not None
    async with asyncio.timeout(30):
        acquired = (await holder.stdout.readline()).decode()
    assert acquired.startswith(f"acquired {name!r} token=")
    token = acquired.split("token=")[1].split()[0]
    describe = await asyncio.create_subprocess_exec(
        str(BIN / "tessera"),
        "lock",
        "describe",
        name,
        "--json",
        "--target",
        target,
        stdout=asyncio.subprocess.PIPE,
    )
    described, _ = await describe.communicate()
    assert describe.returncode == 0
    assert f'"token": "{token}"' in described.decode()
    listing = await asyncio.create_subprocess_exec(
        str(BIN / "tessera"),
        "lock",
        "ls",
        name.split("/")[0],
        "--target",
        target,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "300"},
    )
    listed, _ = await listing.communicate()
    assert name in listed.decode()
    holder.send_signal(signal.SIGINT)
    async with asyncio.timeout(30):
        await holder.communicate()
    # Ctrl-C released the lock at once instead of leaving it to expire with the session.
    assert not (await lock_client.describe(name)).holders
    session = await lock_client.open_session(5)
    try:
        assert await lock_client.try_acquire(name, session) is not None, "a lock-delay applied"
    finally:
        await session.close()
