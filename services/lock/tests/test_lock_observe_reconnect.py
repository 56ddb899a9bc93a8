"""`LockClient.observe` keeps yielding across a lock service restart and a dropped connection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

from tessera.client.lock import Leader, LockClient
from tessera.core import ValidationError
from tessera.core.embedded import free_port
from tessera.testing import RunningService, TcpProxy

#: The `lock_process` fixture (conftest.py): runs a lock service process on a port.
LockProcess = Callable[[int], AbstractAsyncContextManager[asyncio.subprocess.Process]]

_STEP_S = 30.0


class _Observer:
    """Collects what `observe` yields, from a task of its own."""

    def __init__(self, client: LockClient, name: str) -> None:
        self.seen: asyncio.Queue[Leader | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(client, name))

    async def _run(self, client: LockClient, name: str) -> None:
        async for leader in client.observe(name):
            await self.seen.put(leader)

    async def next(self) -> Leader | None:
        async with asyncio.timeout(_STEP_S):
            return await self.seen.get()

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def test_lock_observe_survives_a_lock_service_restart(
    lock_process: LockProcess, lock_client: LockClient
) -> None:
    name = f"observe-restart/{uuid.uuid4().hex}"
    port = free_port()
    # The leader is served by the in-process service on the same etcd: it lives through the
    # restart of the process the observer talks to.
    async with LockClient.connect(f"127.0.0.1:{port}") as observing:
        observer = _Observer(observing, name)
        try:
            async with lock_client.campaign(name, b"one", ttl=10, wait=10) as leading:
                one = Leader(leading.session.id, leading.token, b"one")
                async with lock_process(port):
                    assert await observer.next() == one
                # Killed: the proclamation happens while the observer cannot see it.
                await leading.proclaim(b"two")
                async with lock_process(port):
                    # Resumed on the new process: the current leader, not a repeat of "one".
                    assert await observer.next() == Leader(one.session_id, one.token, b"two")
                    await leading.proclaim(b"three")
                    assert await observer.next() == Leader(one.session_id, one.token, b"three")
                # A restart that changed nothing yields nothing: the next item is "four".
                async with lock_process(port):
                    await leading.proclaim(b"four")
                    assert await observer.next() == Leader(one.session_id, one.token, b"four")
        finally:
            await observer.stop()


async def test_lock_observe_survives_a_dropped_connection(
    lock_service: RunningService, lock_client: LockClient
) -> None:
    name = f"observe-drop/{uuid.uuid4().hex}"
    host, _, port = lock_service.server.address.rpartition(":")
    async with TcpProxy(host, int(port)) as proxy, LockClient.connect(proxy.address) as observing:
        observer = _Observer(observing, name)
        try:
            assert await observer.next() is None
            async with lock_client.campaign(name, b"one", ttl=10, wait=10) as leading:
                assert await observer.next() == Leader(leading.session.id, leading.token, b"one")
                await proxy.drop()
                await leading.proclaim(b"two")
                await asyncio.sleep(0.5)
                await proxy.heal()
                assert await observer.next() == Leader(leading.session.id, leading.token, b"two")
            assert await observer.next() is None
        finally:
            await observer.stop()


async def test_lock_observe_does_not_retry_what_a_retry_cannot_fix(lock_client: LockClient) -> None:
    async with asyncio.timeout(10):
        with pytest.raises(ValidationError) as raised:
            async for _ in lock_client.observe(""):
                pass
    assert [violation.field for violation in raised.value.violations] == ["name"]
