"""A ZooKeeper waiter learns at once that its session ended, whichever replica ended it.

A waiter used to sleep until an entry ahead of it left or a remembered lease should have ended:
a close of its session by another backend instance (another lock service replica) went
unnoticed until then, up to the session's TTL. These tests run on a real ZooKeeper with two
backend instances and count how long the waiter takes and what its wait costs in requests.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from kazoo.client import KazooClient  # type: ignore[import-untyped]  # kazoo ships no types

from tessera.core import BackendError, NotFoundError
from tessera.core.embedded import ZooKeeperServer
from tessera.core.plugins import LockGrant, LockMode, ReleaseOutcome
from tessera.lock_backends import ZooKeeperLockBackend, ZooKeeperSettings
from tessera.testing import ServerFactory

_TTL_S = 30  # far longer than any wait below: an end noticed by the lease would time out
_WAIT_S = 5
_PROMPT_S = 1.0
_RECONNECT_S = 30  # kazoo's attempts back off, and one may wait out its 10 s connect timeout


async def _queued(
    backend: ZooKeeperLockBackend, name: str, session_id: str, timeout_s: float = _WAIT_S
) -> None:
    """Wait, from outside, until `session_id` waits for lock `name`."""
    async with asyncio.timeout(timeout_s):
        # Polls on purpose: the waiter's own state is what is under test.
        while session_id not in {e.session_id for e in (await backend.describe(name)).waiters}:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def _holder(backend: ZooKeeperLockBackend, name: str) -> tuple[str, LockGrant]:
    session = await backend.open_session(_TTL_S)
    grant = await backend.acquire(name, session.id, LockMode.EXCLUSIVE, wait_s=0)
    assert grant is not None
    return session.id, grant


async def _ends_promptly(wait: asyncio.Future[LockGrant | None]) -> None:
    started = asyncio.get_running_loop().time()
    with pytest.raises(NotFoundError, match="ended while waiting"):
        async with asyncio.timeout(_WAIT_S):
            await wait
    assert asyncio.get_running_loop().time() - started < _PROMPT_S


@pytest.mark.parametrize("closer", [1, 0], ids=["other-replica", "same-replica"])
async def test_zookeeper_waiter_fails_at_once_when_its_session_is_closed(
    closer: int, zookeeper_replicas: list[ZooKeeperLockBackend]
) -> None:
    waiting = zookeeper_replicas[0]
    name = f"session-closed/{closer}"
    holder, held = await _holder(zookeeper_replicas[1], name)
    session = await waiting.open_session(_TTL_S)
    wait = asyncio.ensure_future(
        waiting.acquire(name, session.id, LockMode.EXCLUSIVE, wait_s=_WAIT_S)
    )
    await _queued(waiting, name, session.id)
    await asyncio.sleep(0.1)  # the waiter sleeps in its wait, its watches set
    assert not wait.done()
    await zookeeper_replicas[closer].close_session(session.id)
    await _ends_promptly(wait)
    for replica in zookeeper_replicas:
        state = await replica.describe(name)
        assert state.waiters == ()
        assert [(e.session_id, e.token) for e in state.holders] == [(holder, held.token)]
    assert await zookeeper_replicas[1].release(name, holder, held.token) is ReleaseOutcome.RELEASED
    await zookeeper_replicas[1].close_session(holder)


async def test_zookeeper_waiters_sharing_a_session_share_one_watch_and_all_fail(
    zookeeper_replicas: list[ZooKeeperLockBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    waiting, closing = zookeeper_replicas
    names = [f"session-shared/{index}" for index in range(3)]
    holders = [await _holder(closing, name) for name in names]
    session = await waiting.open_session(_TTL_S)
    sent: Counter[str] = Counter()
    requests = await waiting._zk.requests()
    get = requests.get

    def counted(path: str, *args: Any, **kwargs: Any) -> Any:
        sent[path] += 1
        return get(path, *args, **kwargs)

    monkeypatch.setattr(requests, "get", counted)
    waits: list[asyncio.Future[LockGrant | None]] = []
    for name in names:
        waits.append(
            asyncio.ensure_future(
                waiting.acquire(name, session.id, LockMode.EXCLUSIVE, wait_s=_WAIT_S)
            )
        )
        await _queued(closing, name, session.id)  # its reads are not counted
    await asyncio.sleep(0.1)
    watched = [path for path in sent if path.endswith(f"/sessions/{session.id}")]
    assert [sent[path] for path in watched] == [1], sent  # one watch for the three waiters
    await closing.close_session(session.id)
    await asyncio.gather(*(_ends_promptly(wait) for wait in waits))
    for name, (holder, held) in zip(names, holders, strict=True):
        state = await closing.describe(name)
        assert state.waiters == ()
        assert [e.session_id for e in state.holders] == [holder]
        assert await closing.release(name, holder, held.token) is ReleaseOutcome.RELEASED
        await closing.close_session(holder)


async def test_zookeeper_waiter_watches_its_session_through_renewals_and_other_locks(
    zookeeper_replicas: list[ZooKeeperLockBackend],
) -> None:
    # Its session's node changes under it (renewed, a place taken and given back on another
    # lock): the waiter neither fails nor is granted, and still learns at once of the end.
    waiting, other = zookeeper_replicas
    name = "session-renewed"
    holder, held = await _holder(other, name)
    session = await waiting.open_session(_TTL_S)
    wait = asyncio.ensure_future(
        waiting.acquire(name, session.id, LockMode.EXCLUSIVE, wait_s=_WAIT_S)
    )
    await _queued(waiting, name, session.id)
    for _ in range(2):
        assert await other.keep_alive(session.id) == _TTL_S
        side = await other.acquire(f"{name}/side", session.id, LockMode.EXCLUSIVE, wait_s=0)
        assert side is not None
        assert await other.release(side.name, session.id, side.token) is ReleaseOutcome.RELEASED
    await asyncio.sleep(0.2)
    assert not wait.done()
    await other.close_session(session.id)
    await _ends_promptly(wait)
    assert [e.session_id for e in (await waiting.describe(name)).holders] == [holder]
    assert await other.release(name, holder, held.token) is ReleaseOutcome.RELEASED
    await other.close_session(holder)


async def test_zookeeper_waiter_watches_its_session_again_after_a_reconnect(
    zookeeper_factory: ServerFactory[ZooKeeperServer],
) -> None:
    # ZooKeeper restarts under a waiting replica: its watches are set again when it reconnects,
    # and a close made afterwards through the other replica still ends the wait at once.
    server = zookeeper_factory()
    waiting, closing = (
        ZooKeeperLockBackend(ZooKeeperSettings(), hosts=server.hosts) for _ in range(2)
    )
    try:
        name = "session-reconnect"
        holder, held = await _holder(closing, name)
        session = await waiting.open_session(_TTL_S)
        wait = asyncio.ensure_future(
            waiting.acquire(name, session.id, LockMode.EXCLUSIVE, wait_s=2 * _RECONNECT_S)
        )
        await _queued(closing, name, session.id)
        await asyncio.to_thread(server.restart)
        async with asyncio.timeout(_RECONNECT_S):
            while True:
                try:
                    await _queued(waiting, name, session.id, _RECONNECT_S)  # still waiting
                    await closing.close_session(session.id)
                    break
                except BackendError:  # kazoo reconnects in the background: try again
                    await asyncio.sleep(0.2)
        await _ends_promptly(wait)
        assert [e.session_id for e in (await closing.describe(name)).holders] == [holder]
        assert await closing.release(name, holder, held.token) is ReleaseOutcome.RELEASED
    finally:
        for backend in (waiting, closing):
            await backend.close()


async def test_zookeeper_waiter_cut_off_by_a_lost_zookeeper_session_retries_into_its_place(
    zookeeper_replicas: list[ZooKeeperLockBackend], zookeeper_server: ZooKeeperServer
) -> None:
    # The waiting replica's own ZooKeeper session expires: ZooKeeper drops its watches and
    # kazoo connects with a new session. The wait fails with a retryable BackendError (the
    # SDK retries UNAVAILABLE with the same request id); the retry finds the entry the first
    # attempt queued, waits in that place, and a close through the other replica ends it at once.
    waiting, closing = zookeeper_replicas
    name = "session-zk-expired"
    holder, held = await _holder(closing, name)
    session = await waiting.open_session(_TTL_S)

    def acquire() -> asyncio.Future[LockGrant | None]:
        return asyncio.ensure_future(
            waiting.acquire(
                name, session.id, LockMode.EXCLUSIVE, wait_s=2 * _RECONNECT_S, request_id="r-1"
            )
        )

    first = acquire()
    await _queued(closing, name, session.id)
    queued = await _places(closing, name)
    client: Any = waiting._zk._client  # white box: the kazoo client whose session is ended
    await asyncio.to_thread(_expire_zookeeper_session, client, zookeeper_server.hosts)
    with pytest.raises(BackendError) as cut_off:
        async with asyncio.timeout(_RECONNECT_S):
            await first
    assert cut_off.value.retryable
    async with asyncio.timeout(_RECONNECT_S):
        while True:
            retry = acquire()
            try:
                await _queued(waiting, name, session.id, _RECONNECT_S)
            except BackendError:  # kazoo reconnects in the background: try again
                retry.cancel()
                await asyncio.sleep(0.2)
                continue
            if not retry.done():
                break
            retry.exception()  # failed while kazoo reconnected: try again
    # The same place, with the same token.
    assert await _places(closing, name) == queued
    await closing.close_session(session.id)
    await _ends_promptly(retry)
    assert [e.session_id for e in (await closing.describe(name)).holders] == [holder]
    assert await closing.release(name, holder, held.token) is ReleaseOutcome.RELEASED


async def _places(backend: ZooKeeperLockBackend, name: str) -> list[tuple[str, int, int]]:
    """Each waiter of lock `name` as (session, token, queue position)."""
    waiters = (await backend.describe(name)).waiters
    return [(entry.session_id, entry.token, entry.queue_position) for entry in waiters]


def _expire_zookeeper_session(client: Any, hosts: str) -> None:
    """End `client`'s ZooKeeper session (on `hosts`) from outside, as a session timeout would.

    A second client that joins the session (same id and password) and closes it makes
    ZooKeeper expire it for the first: ZooKeeper's own way to test a session's expiry.
    """
    intruder = KazooClient(hosts=hosts, client_id=client.client_id)
    intruder.start(_WAIT_S)
    intruder.stop()
    intruder.close()
