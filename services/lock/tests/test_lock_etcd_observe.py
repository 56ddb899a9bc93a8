"""The etcd backend's `observe` keeps the queue from its watch instead of describing each time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest

from tessera.core.plugins import LockMode, LockState
from tessera.lock_backends import EtcdLockBackend

_WAIT_S = 10.0


def _queue(state: LockState) -> tuple[list[tuple[str, int, int, bytes]], ...]:
    """What observe and describe must agree on (lease expiries are read at other instants)."""
    return tuple(
        [(e.session_id, e.token, e.queue_position, e.value) for e in entries]
        for entries in (state.holders, state.waiters)
    )


async def test_lock_etcd_observe_reads_only_new_leases_per_change(
    lock_backend: EtcdLockBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"etcd-observe/{uuid.uuid4().hex}"
    reads: list[int] = []
    read_lease: Callable[[int], Awaitable[float]] = lock_backend._lease_ttl

    async def counted(lease_id: int) -> float:
        reads.append(lease_id)
        return await read_lease(lease_id)

    # A spy on the real backend: every lease read of `observe` goes through it.
    monkeypatch.setattr(lock_backend, "_lease_ttl", counted)
    sessions = [await lock_backend.open_session(10) for _ in range(6)]
    holder = await lock_backend.acquire(
        name, sessions[0].id, LockMode.EXCLUSIVE, wait_s=0, value=b"lead"
    )
    assert holder is not None
    waits = [
        asyncio.create_task(
            lock_backend.acquire(name, s.id, LockMode.EXCLUSIVE, wait_s=_WAIT_S, value=b"w")
        )
        for s in sessions[1:5]
    ]
    states = lock_backend.observe(name)
    try:
        async with asyncio.timeout(_WAIT_S):
            while len((state := await anext(states)).waiters) < 4:
                pass
        assert _queue(state) == _queue(await lock_backend.describe(name))
        reads.clear()

        async def next_change(predicate: Callable[[LockState], bool]) -> LockState:
            async with asyncio.timeout(_WAIT_S):
                while not predicate(state := await anext(states)):
                    pass
            return state

        late = asyncio.create_task(
            lock_backend.acquire(name, sessions[5].id, LockMode.EXCLUSIVE, wait_s=_WAIT_S)
        )
        state = await next_change(lambda s: len(s.waiters) == 5)
        # A describe per event would read all six leases; the mirror reads the newcomer's.
        assert len(reads) == 1
        assert _queue(state) == _queue(await lock_backend.describe(name))
        reads.clear()
        assert await lock_backend.proclaim(name, sessions[0].id, holder.token, b"again")
        state = await next_change(lambda s: s.holders[0].value == b"again")
        assert reads == []
        successor = state.waiters[0].session_id
        await lock_backend.release(name, sessions[0].id, holder.token)
        state = await next_change(lambda s: [e.session_id for e in s.holders] == [successor])
        # The new holder's lease is read again (its expiry is the one readers act on).
        assert len(reads) == 1
        assert state.holders[0].lease_expires_in_s is not None
        assert _queue(state) == _queue(await lock_backend.describe(name))
    finally:
        await states.aclose()
        for session in sessions:
            await lock_backend.close_session(session.id)
        await asyncio.gather(*waits, late, return_exceptions=True)
