"""How the ZooKeeper backend's semaphore waiters wake: one read per release, not one per waiter.

A release used to wake every later permit waiter, and each read the queue and its blockers'
sessions again (a thundering herd: 37 grants/s for 16 clients on 4 permits). These tests count
the reads a hand-off costs on a real ZooKeeper, within one backend and across two.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tessera.core.plugins import LockGrant, LockMode, ReleaseOutcome
from tessera.lock_backends import ZooKeeperConnection, ZooKeeperLockBackend
from tessera.lock_backends._queue import LockQueue, QueuedEntry
from tessera.lock_backends._zookeeper import _awaited
from tessera.lock_backends._zookeeper_sessions import ZooKeeperSessions
from tessera.lock_backends._zookeeper_waits import Children, Departures

_TTL_S = 10
_WAIT_S = 10
_SETTLE_S = 0.3  # without a read for this long, the waiters are in their waits


async def _count_reads(
    backend: ZooKeeperLockBackend, monkeypatch: pytest.MonkeyPatch
) -> Counter[str]:
    """Count the reads `backend` sends once it sent none for a while (they still go out)."""
    counts: Counter[str] = Counter()
    requests = await backend._zk.requests()

    def counted(method: str, send: Callable[..., Any]) -> Callable[..., Any]:
        def spy(*args: Any, **kwargs: Any) -> Any:
            counts[method] += 1
            return send(*args, **kwargs)

        return spy

    for method in ("children", "exists", "get"):
        monkeypatch.setattr(requests, method, counted(method, getattr(requests, method)))
    async with asyncio.timeout(_WAIT_S):
        while True:  # until the waiters are back in their waits, whatever the machine's load
            before = counts.total()
            await asyncio.sleep(_SETTLE_S)
            if counts.total() == before:
                counts.clear()
                return counts


async def _permit(
    backend: ZooKeeperLockBackend, name: str, session_id: str, wait_s: float
) -> LockGrant | None:
    return await backend.acquire(name, session_id, LockMode.PERMIT, wait_s=wait_s, permits=2)


async def _queue_waiters(
    backend: ZooKeeperLockBackend, name: str, session_ids: list[str]
) -> list[asyncio.Future[LockGrant | None]]:
    """Start a permit waiter per session, in order, each queued before the next starts."""
    waits: list[asyncio.Future[LockGrant | None]] = []
    for position, session_id in enumerate(session_ids, start=1):
        waits.append(asyncio.ensure_future(_permit(backend, name, session_id, _WAIT_S)))
        async with asyncio.timeout(_WAIT_S):
            # Polls on purpose: waits, from outside, for the waiter to be queued.
            while len((await backend.describe(name)).waiters) < position:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    return waits


async def test_zookeeper_semaphore_release_hands_its_read_to_every_local_waiter(
    zookeeper_replicas: list[ZooKeeperLockBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = zookeeper_replicas[0]
    name = "semaphore-herd/local"
    sessions = [(await backend.open_session(_TTL_S)).id for _ in range(8)]
    holders = [await _permit(backend, name, session_id, 0) for session_id in sessions[:2]]
    waits = await _queue_waiters(backend, name, sessions[2:])
    reads = await _count_reads(backend, monkeypatch)
    held = holders[0]
    assert held is not None
    assert await backend.release(name, held.session_id, held.token) is ReleaseOutcome.RELEASED
    async with asyncio.timeout(_WAIT_S):
        granted = await waits[0]
    await asyncio.sleep(_SETTLE_S)
    assert granted is not None
    assert granted.session_id == sessions[2]
    assert not any(wait.done() for wait in waits[1:])
    # The release reads the queue once for all six waiters; the waiters read no session (their
    # blockers' leases are known) and at most one new holder's node is watched, for all.
    assert reads["children"] == 1, reads
    assert reads["get"] == 0, reads
    assert reads["exists"] <= 1, reads
    for session_id in sessions:
        await backend.close_session(session_id)
    await asyncio.gather(*waits, return_exceptions=True)  # their sessions ended


async def test_zookeeper_semaphore_release_elsewhere_costs_one_read_per_replica(
    zookeeper_replicas: list[ZooKeeperLockBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, waiting = zookeeper_replicas
    name = "semaphore-herd/remote"
    holding = [(await owner.open_session(_TTL_S)).id for _ in range(2)]
    holders = [await _permit(owner, name, session_id, 0) for session_id in holding]
    sessions = [(await waiting.open_session(_TTL_S)).id for _ in range(5)]
    waits = await _queue_waiters(waiting, name, sessions)
    reads = await _count_reads(waiting, monkeypatch)
    held = holders[1]
    assert held is not None
    assert await owner.release(name, held.session_id, held.token) is ReleaseOutcome.RELEASED
    async with asyncio.timeout(_WAIT_S):
        granted = await waits[0]
    await asyncio.sleep(_SETTLE_S)
    assert granted is not None
    assert granted.session_id == sessions[0]
    assert not any(wait.done() for wait in waits[1:])
    # The watch event makes one read for the five waiters of this replica.
    assert reads["children"] == 1, reads
    assert reads["get"] == 0, reads
    assert reads["exists"] <= 1, reads
    for session_id in sessions:
        await waiting.close_session(session_id)
    for session_id in holding:
        await owner.close_session(session_id)
    await asyncio.gather(*waits, return_exceptions=True)


async def test_zookeeper_semaphore_waiter_outwaits_a_holder_renewed_elsewhere(
    zookeeper_replicas: list[ZooKeeperLockBackend],
) -> None:
    # A waiter remembers the deadline of a holder's session; another replica renews it: the
    # remembered deadline passes, the waiter must look again and keep waiting.
    owner, waiting = zookeeper_replicas
    name = "semaphore-renewed"
    holder = await owner.open_session(2)
    held = await owner.acquire(name, holder.id, LockMode.PERMIT, wait_s=0, permits=1)
    assert held is not None
    session = await waiting.open_session(_TTL_S)
    wait = asyncio.ensure_future(
        waiting.acquire(name, session.id, LockMode.PERMIT, wait_s=_WAIT_S, permits=1)
    )
    for _ in range(7):  # 3.5 s: past the deadline the waiter first read
        await asyncio.sleep(0.5)
        assert await owner.keep_alive(holder.id) == 2
        assert not wait.done(), "granted while the holder's session was renewed"
    assert await owner.release(name, holder.id, held.token) is ReleaseOutcome.RELEASED
    async with asyncio.timeout(_WAIT_S):
        granted = await wait
    assert granted is not None
    assert granted.token > held.token
    await waiting.close_session(session.id)
    await owner.close_session(holder.id)


async def test_zookeeper_stale_read_is_answered_with_a_later_one() -> None:
    # Pure logic: no request is sent when a later read shows the awaited entry gone.
    departures = Departures(ZooKeeperConnection("127.0.0.1:1", lambda: None))
    lock = "/tessera/lock/locks/n-x"
    first, second = "q-00000000000000a1-p-2-0000000001", "q-00000000000000a2-p-2-0000000002"
    older = Children([first, second], 10)
    later = Children([second], 12)
    assert departures.seen(lock, later) is later
    assert departures.seen(lock, older) is later, "an older read replaced a later one"
    handed = await departures.wait_for(lock, (first,), older)
    assert handed.done()
    assert handed.result() is later


def test_zookeeper_permit_waiter_waits_for_the_holders_of_a_full_semaphore() -> None:
    permits = [QueuedEntry(f"s{token}", LockMode.PERMIT, token, 2) for token in range(1, 5)]
    queue = LockQueue(permits)
    assert _awaited(queue, permits[3]) == tuple(permits[:2])
    assert _awaited(queue, permits[1]) == ()
    # An entry of another kind before it (about to give way): any earlier entry may free it.
    mixed = [QueuedEntry("x", LockMode.EXCLUSIVE, 1), *permits[2:]]
    assert _awaited(LockQueue(mixed), permits[3]) == tuple(mixed[:2])


def test_zookeeper_remembered_leases_are_lower_bounds_and_pruned() -> None:
    # Pure logic: nothing is sent to ZooKeeper.
    sessions = ZooKeeperSessions(ZooKeeperConnection("127.0.0.1:1", lambda: None), lambda _: None)
    soon = int(time.time() * 1000) + 60_000
    sessions._saw_deadline("alive", soon)
    sessions._saw_deadline("alive", soon - 1000)  # an older read does not move it back
    assert sessions.remembered_ms(["alive"]) == {"alive": soon}
    assert sessions.remembered_ms(["alive", "unknown"]) is None
    for index in range(3000):  # sessions ended elsewhere, never read again
        sessions._saw_deadline(f"ended-{index}", 1)
    assert sessions.remembered_ms(["alive"]) == {"alive": soon}
    assert len(sessions._deadlines) <= 2048
