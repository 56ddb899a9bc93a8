from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio
from kazoo.client import KazooClient  # type: ignore[import-untyped]  # kazoo ships no types

from tessera.core import BackendError
from tessera.core.embedded import ZooKeeperServer
from tessera.core.plugins import (
    LOCK_BACKENDS,
    LockBackend,
    LockMode,
    ReleaseOutcome,
    Safety,
    load_plugins,
)
from tessera.lock_backends import ZooKeeperLockBackend, ZooKeeperSettings
from tessera.lock_backends._zookeeper_layout import (
    entry_prefix,
    lock_name,
    lock_path,
    node_name,
    parse_children,
)
from tessera.testing import ServerFactory
from tessera.testing.conformance.lock_backends import LOCK_BACKEND_CHECKS


@pytest_asyncio.fixture
async def zookeeper_backend(
    zookeeper_server: ZooKeeperServer,
) -> AsyncIterator[ZooKeeperLockBackend]:
    backend = ZooKeeperLockBackend(ZooKeeperSettings(zookeeper_hosts=zookeeper_server.hosts))
    yield backend
    await backend.close()


@pytest.mark.parametrize("check", LOCK_BACKEND_CHECKS, ids=lambda check: check.__name__)
async def test_zookeeper_backend_conforms(
    check: Callable[[LockBackend], Awaitable[None]], zookeeper_backend: ZooKeeperLockBackend
) -> None:
    await check(zookeeper_backend)


async def test_zookeeper_backend_is_registered_and_linearizable(
    zookeeper_server: ZooKeeperServer,
) -> None:
    plugin = load_plugins(LOCK_BACKENDS).get("zookeeper")
    backend = plugin.create(ZooKeeperSettings(zookeeper_hosts=zookeeper_server.hosts))
    assert isinstance(backend, ZooKeeperLockBackend)
    assert backend.safety is Safety.LINEARIZABLE
    try:
        session = await backend.open_session(5)
        assert 4 < await backend.session_ttl(session.id) <= 5
        assert await backend.keep_alive(session.id) == 5
        await backend.close_session(session.id)
        assert await backend.keep_alive(session.id) == 0
        assert await backend.session_ttl(session.id) == 0
        assert await backend.keep_alive("not-a-session") == 0
    finally:
        await backend.close()


async def test_zookeeper_tokens_keep_increasing_across_a_zookeeper_restart(
    zookeeper_factory: ServerFactory[ZooKeeperServer],
) -> None:
    server = zookeeper_factory()
    backend = ZooKeeperLockBackend(ZooKeeperSettings(), hosts=server.hosts)
    try:
        session = await backend.open_session(30)
        before = await backend.acquire("restart", session.id, LockMode.EXCLUSIVE, wait_s=0)
        assert before is not None
        await backend.release("restart", session.id, before.token)
        await asyncio.to_thread(server.restart)
        async with asyncio.timeout(20):
            while True:
                try:
                    after = await backend.acquire(
                        "restart", session.id, LockMode.EXCLUSIVE, wait_s=5, request_id="again"
                    )
                    break
                except BackendError:  # kazoo reconnects in the background: try again
                    await asyncio.sleep(0.2)
        assert after is not None
        assert after.token > before.token
    finally:
        await backend.close()


async def test_zookeeper_locks_of_a_vanished_process_free_after_their_ttl(
    zookeeper_server: ZooKeeperServer,
) -> None:
    # A service process that dies leaves its nodes behind (they are persistent): its sessions
    # end after their TTL, by ZooKeeper's clock, and the next contender frees their locks.
    gone = ZooKeeperLockBackend(ZooKeeperSettings(), hosts=zookeeper_server.hosts)
    survivor = ZooKeeperLockBackend(ZooKeeperSettings(), hosts=zookeeper_server.hosts)
    try:
        stale = await gone.open_session(2)
        held = await gone.acquire("vanished", stale.id, LockMode.EXCLUSIVE, wait_s=0)
        assert held is not None
        await gone.close()  # its ZooKeeper connection ends, as in a crash
        assert [h.token for h in (await survivor.describe("vanished")).holders] == [held.token]
        session = await survivor.open_session(10)
        started = asyncio.get_running_loop().time()
        grant = await survivor.acquire("vanished", session.id, LockMode.EXCLUSIVE, wait_s=10)
        assert grant is not None
        assert grant.token > held.token
        assert 1.0 < asyncio.get_running_loop().time() - started < 8
        assert await survivor.keep_alive(stale.id) == 0
        await survivor.close_session(session.id)
    finally:
        await survivor.close()


@pytest.mark.parametrize("name", [".", "..", "a/b", "zookeeper", "ünï cödé", "q-x-1-0000000001"])
def test_zookeeper_lock_names_become_valid_node_names(name: str) -> None:
    node = node_name(name)
    assert node not in {".", ".."}
    assert "/" not in node
    assert lock_name(node) == name


def test_zookeeper_children_split_into_entries_and_delay_markers() -> None:
    children = [
        "q-00000000000000ab-x-0-0000000007",
        "d-1700000000000-00000000000000ab",
        "q-cd-p-3-0000000009",
    ]
    entries, markers = parse_children(children)
    found = [(n.entry.session_id, n.entry.mode, n.entry.token, n.entry.permits) for n in entries]
    assert found == [("00000000000000ab", LockMode.EXCLUSIVE, 7, 0), ("cd", LockMode.PERMIT, 9, 3)]
    assert [m.until_ms for m in markers] == [1700000000000]


@pytest.mark.parametrize("first", ["try", "wait", "describe"])
async def test_zookeeper_orphaned_entry_neither_blocks_nor_shows(
    first: str, zookeeper_backend: ZooKeeperLockBackend, zookeeper_server: ZooKeeperServer
) -> None:
    # An entry whose session node is gone (none should exist: a session's end deletes its
    # entries in the same transaction) must not block the lock forever, whoever meets it first.
    name = f"orphaned/{first}"
    kazoo = KazooClient(hosts=zookeeper_server.hosts)
    await asyncio.to_thread(kazoo.start, 15)
    try:
        await asyncio.to_thread(kazoo.ensure_path, lock_path(name))
        prefix = entry_prefix(name, "00000000deadbeef", LockMode.EXCLUSIVE, 0)
        await asyncio.to_thread(kazoo.create, prefix, b"", sequence=True)
    finally:
        await asyncio.to_thread(kazoo.stop)
        await asyncio.to_thread(kazoo.close)
    session = await zookeeper_backend.open_session(10)
    async with asyncio.timeout(10):
        if first == "describe":
            assert (await zookeeper_backend.describe(name)).holders == ()
        wait_s = 5 if first == "wait" else 0
        grant = await zookeeper_backend.acquire(name, session.id, LockMode.EXCLUSIVE, wait_s=wait_s)
        assert grant is not None
        assert [h.token for h in (await zookeeper_backend.describe(name)).holders] == [grant.token]
    await zookeeper_backend.close_session(session.id)


async def test_zookeeper_fifo_and_tokens_hold_across_two_backend_instances(
    zookeeper_server: ZooKeeperServer,
) -> None:
    # Two instances are two service replicas: a release on one reaches the other's waiters
    # through ZooKeeper's watch only.
    replicas = [
        ZooKeeperLockBackend(ZooKeeperSettings(), hosts=zookeeper_server.hosts) for _ in range(2)
    ]
    try:
        sessions = [await replicas[i % 2].open_session(10) for i in range(4)]
        holder = await replicas[0].acquire("replicas", sessions[0].id, LockMode.EXCLUSIVE, wait_s=0)
        assert holder is not None
        waits = []
        for index in range(1, 4):
            replica = replicas[index % 2]
            waits.append(
                asyncio.ensure_future(
                    replica.acquire("replicas", sessions[index].id, LockMode.EXCLUSIVE, wait_s=10)
                )
            )
            async with asyncio.timeout(10):
                # Polls on purpose: waits, from outside, for the waiter to be queued.
                while len((await replicas[0].describe("replicas")).waiters) < index:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
        tokens = [holder.token]
        for index, wait in enumerate(waits, start=1):
            await asyncio.sleep(0.05)
            assert not wait.done(), "a waiter was granted while an earlier one still waited"
            owner = replicas[(index - 1) % 2]
            assert await owner.release("replicas", sessions[index - 1].id, tokens[-1]) is (
                ReleaseOutcome.RELEASED
            )
            async with asyncio.timeout(10):
                grant = await wait
            assert grant is not None
            assert grant.session_id == sessions[index].id
            tokens.append(grant.token)
        assert tokens == sorted(set(tokens))
        for index, session in enumerate(sessions):
            await replicas[index % 2].close_session(session.id)
    finally:
        for replica in replicas:
            await replica.close()
