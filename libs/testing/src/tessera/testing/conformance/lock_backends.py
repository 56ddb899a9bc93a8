"""Conformance kit of the `tessera.lock_backends` family, run against a backend on its real server.

Each check takes a connected backend (`tessera.core.plugins.LockBackend`), uses lock names no
other check uses, and asserts what the Protocol's contract promises: mutual exclusion, FIFO order,
strictly increasing fencing tokens, shared versus exclusive modes, idempotent retries, release
outcomes, leaving the queue on timeout, locks and waits ended when their session expires, and
lock-delay after an involuntary release (and none after a voluntary one), reentrant hold
counts, semaphores (permits, FIFO, sizes that do not mix, permits freed with their session),
values stored with entries (elections: `proclaim`, `observe`) and `reap`.
Point it at a plugin from the plugin's own tests::

    from tessera.testing.conformance.lock_backends import LOCK_BACKEND_CHECKS

    @pytest.mark.parametrize("check", LOCK_BACKEND_CHECKS, ids=lambda c: c.__name__)
    async def test_conformance(check, my_backend):
        await check(my_backend)

The session-expiry and lock-delay checks need a backend that honours a 2 s TTL (a session's TTL
may be rounded up, but not beyond what its check waits: 10 s).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from tessera.core import FailedPreconditionError, NotFoundError
from tessera.core.plugins import LockBackend, LockGrant, LockMode, LockState, ReleaseOutcome
from tessera.testing._checks import check_exclusive_holds, check_fencing_tokens
from tessera.testing._history import ACQUIRE, OK, RELEASE, History

_TTL_S = 10.0
_WAIT_S = 10.0


def _name(check: str) -> str:
    return f"conformance/{check}/{uuid.uuid4().hex}"


async def _granted(grant: LockGrant | None) -> LockGrant:
    assert grant is not None, "the lock was not granted"
    return grant


async def _until_queued(backend: LockBackend, name: str, waiters: int) -> None:
    """Wait until `name` has `waiters` waiters (arrival is asynchronous)."""
    async with asyncio.timeout(_WAIT_S):
        # Polls on purpose: the kit observes the backend from outside, as a client would.
        while len((await backend.describe(name)).waiters) < waiters:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def check_mutual_exclusion(backend: LockBackend) -> None:
    """Check that exclusive holders never overlap and tokens increase in grant order."""
    name = _name("mutex")
    history = History()

    async def worker(index: int) -> None:
        session = await backend.open_session(_TTL_S)
        try:
            for _ in range(3):
                invocation = history.invoke(f"client-{index}", ACQUIRE, key=name)
                grant = await _granted(
                    await backend.acquire(name, session.id, LockMode.EXCLUSIVE, wait_s=_WAIT_S)
                )
                invocation.complete(OK, token=grant.token)
                await asyncio.sleep(0.005)
                invocation = history.invoke(f"client-{index}", RELEASE, key=name)
                outcome = await backend.release(name, session.id, grant.token)
                invocation.complete(OK if outcome is ReleaseOutcome.RELEASED else outcome.value)
        finally:
            await backend.close_session(session.id)

    await asyncio.gather(*(worker(index) for index in range(4)))
    assert len(history) == 24
    assert all(operation.succeeded for operation in history)
    assert check_exclusive_holds(history) == []
    assert check_fencing_tokens(history) == []


async def check_fifo_order(backend: LockBackend) -> None:
    """Check that waiters are granted the lock in the order they arrived, one release at a time."""
    name = _name("fifo")
    sessions = [await backend.open_session(_TTL_S) for _ in range(4)]
    try:
        first = await _granted(
            await backend.acquire(name, sessions[0].id, LockMode.EXCLUSIVE, wait_s=0)
        )
        waits = []
        for position, session in enumerate(sessions[1:], start=1):
            waits.append(
                asyncio.create_task(
                    backend.acquire(name, session.id, LockMode.EXCLUSIVE, wait_s=_WAIT_S)
                )
            )
            await _until_queued(backend, name, position)
        state = await backend.describe(name)
        assert [entry.session_id for entry in state.waiters] == [s.id for s in sessions[1:]]
        assert [entry.queue_position for entry in state.waiters] == [1, 2, 3]
        holder = first
        for wait in waits:
            await asyncio.sleep(0.05)  # a later waiter jumping the queue would be granted now
            assert not wait.done(), "a waiter was granted while an earlier one still waited"
            assert await backend.release(name, holder.session_id, holder.token) is (
                ReleaseOutcome.RELEASED
            )
            async with asyncio.timeout(_WAIT_S):
                holder = await _granted(await wait)
            assert all(not later.done() for later in waits[waits.index(wait) + 1 :])
        await backend.release(name, holder.session_id, holder.token)
    finally:
        for session in sessions:
            await backend.close_session(session.id)


async def check_token_monotonicity(backend: LockBackend) -> None:
    """Check that each grant of a lock carries a larger token than every earlier grant of it."""
    name = _name("tokens")
    sessions = [await backend.open_session(_TTL_S) for _ in range(2)]
    try:
        tokens = []
        for round_ in range(6):
            session = sessions[round_ % 2]
            grant = await _granted(
                await backend.acquire(name, session.id, LockMode.EXCLUSIVE, wait_s=_WAIT_S)
            )
            tokens.append(grant.token)
            await backend.release(name, session.id, grant.token)
        assert tokens == sorted(set(tokens)), f"tokens not strictly increasing: {tokens}"
    finally:
        for session in sessions:
            await backend.close_session(session.id)


async def check_shared_vs_exclusive(backend: LockBackend) -> None:
    """Check that shared holders coexist and exclusive and shared holders exclude each other."""
    name = _name("modes")
    readers = [await backend.open_session(_TTL_S) for _ in range(2)]
    writer = await backend.open_session(_TTL_S)
    try:
        shared = [
            await _granted(await backend.acquire(name, r.id, LockMode.SHARED, wait_s=0))
            for r in readers
        ]
        assert len((await backend.describe(name)).holders) == 2
        assert await backend.acquire(name, writer.id, LockMode.EXCLUSIVE, wait_s=0) is None
        for grant in shared:
            await backend.release(name, grant.session_id, grant.token)
        exclusive = await _granted(
            await backend.acquire(name, writer.id, LockMode.EXCLUSIVE, wait_s=0)
        )
        assert exclusive.token > max(grant.token for grant in shared)
        assert await backend.acquire(name, readers[0].id, LockMode.SHARED, wait_s=0) is None
        await backend.release(name, writer.id, exclusive.token)
    finally:
        for session in [*readers, writer]:
            await backend.close_session(session.id)


async def check_release_outcomes(backend: LockBackend) -> None:
    """Check that release is owner-only and idempotent; a waiter cannot release."""
    name = _name("release")
    owner, other = await backend.open_session(_TTL_S), await backend.open_session(_TTL_S)
    try:
        grant = await _granted(await backend.acquire(name, owner.id, LockMode.EXCLUSIVE, wait_s=0))
        waiting = asyncio.create_task(
            backend.acquire(name, other.id, LockMode.EXCLUSIVE, wait_s=_WAIT_S)
        )
        await _until_queued(backend, name, 1)
        waiter_token = (await backend.describe(name)).waiters[0].token
        assert await backend.release(name, other.id, grant.token) is ReleaseOutcome.NOT_HOLDER
        assert await backend.release(name, other.id, waiter_token) is ReleaseOutcome.NOT_HOLDER
        assert (await backend.describe(name)).holders[0].token == grant.token  # unchanged
        assert await backend.release(name, owner.id, grant.token) is ReleaseOutcome.RELEASED
        assert await backend.release(name, owner.id, grant.token) is ReleaseOutcome.ALREADY_GONE
        second = await _granted(await waiting)
        await backend.release(name, other.id, second.token)
    finally:
        await backend.close_session(owner.id)
        await backend.close_session(other.id)


async def check_retry_is_idempotent(backend: LockBackend) -> None:
    """Check that a retry with the same request id returns the same grant, another id fails."""
    name = _name("retry")
    session = await backend.open_session(_TTL_S)
    try:
        first = await _granted(
            await backend.acquire(name, session.id, LockMode.EXCLUSIVE, wait_s=0, request_id="r1")
        )
        again = await _granted(
            await backend.acquire(name, session.id, LockMode.EXCLUSIVE, wait_s=0, request_id="r1")
        )
        assert again.token == first.token
        try:
            await backend.acquire(name, session.id, LockMode.EXCLUSIVE, wait_s=0, request_id="r2")
        except FailedPreconditionError:
            pass
        else:
            raise AssertionError("a second request id acquired the lock twice")
        assert len((await backend.describe(name)).holders) == 1
    finally:
        await backend.close_session(session.id)


async def check_timeout_leaves_queue(backend: LockBackend) -> None:
    """Check that a wait that times out returns None and leaves no waiter behind."""
    name = _name("timeout")
    holder, waiter = await backend.open_session(_TTL_S), await backend.open_session(_TTL_S)
    try:
        await _granted(await backend.acquire(name, holder.id, LockMode.EXCLUSIVE, wait_s=0))
        assert await backend.acquire(name, waiter.id, LockMode.EXCLUSIVE, wait_s=0.3) is None
        assert (await backend.describe(name)).waiters == ()
    finally:
        await backend.close_session(holder.id)
        await backend.close_session(waiter.id)


async def check_session_expiry_frees_locks(backend: LockBackend) -> None:
    """Check that a holder not kept alive loses the lock to a waiter, with a larger token."""
    name = _name("expiry")
    stale = await backend.open_session(2.0)
    waiter = await backend.open_session(_TTL_S)
    try:
        old = await _granted(await backend.acquire(name, stale.id, LockMode.EXCLUSIVE, wait_s=0))
        new = await _granted(
            await backend.acquire(name, waiter.id, LockMode.EXCLUSIVE, wait_s=_WAIT_S)
        )
        assert new.token > old.token
        assert await backend.keep_alive(stale.id) == 0
        assert await backend.release(name, stale.id, old.token) is ReleaseOutcome.ALREADY_GONE
        await backend.release(name, waiter.id, new.token)
    finally:
        await backend.close_session(waiter.id)


async def check_waiter_session_expiry_ends_its_wait(backend: LockBackend) -> None:
    """Check that a waiter whose session expires stops waiting and leaves the queue."""
    name = _name("waiter-expiry")
    holder = await backend.open_session(_TTL_S)
    waiter = await backend.open_session(2.0)
    try:
        grant = await _granted(await backend.acquire(name, holder.id, LockMode.EXCLUSIVE, wait_s=0))
        started = asyncio.get_running_loop().time()
        try:
            await backend.acquire(name, waiter.id, LockMode.EXCLUSIVE, wait_s=_WAIT_S)
        except NotFoundError:
            pass
        else:
            raise AssertionError("a waiter kept its place after its session expired")
        assert asyncio.get_running_loop().time() - started < _WAIT_S - 2
        state = await backend.describe(name)
        assert state.waiters == ()
        assert [entry.token for entry in state.holders] == [grant.token]
    finally:
        await backend.close_session(holder.id)


async def check_lock_delay(backend: LockBackend) -> None:
    """Check that a lock-delay holds the lock back after an expiry, and only after an expiry."""
    name = _name("lock-delay")
    delay_s = 1.5
    stale = await backend.open_session(2.0)
    opened = asyncio.get_running_loop().time()
    waiter = await backend.open_session(_TTL_S)
    try:
        await _granted(
            await backend.acquire(
                name, stale.id, LockMode.EXCLUSIVE, wait_s=0, lock_delay_s=delay_s
            )
        )
        new = await _granted(
            await backend.acquire(name, waiter.id, LockMode.EXCLUSIVE, wait_s=_WAIT_S)
        )
        # The lease ends no earlier than its TTL after it was granted; the delay follows it.
        assert asyncio.get_running_loop().time() - opened >= stale.ttl_s + delay_s - 0.25
        await backend.release(name, waiter.id, new.token)
        # A release, or closing the session, is voluntary: no delay.
        again = await _granted(
            await backend.acquire(name, waiter.id, LockMode.EXCLUSIVE, wait_s=0, lock_delay_s=30)
        )
        assert await backend.release(name, waiter.id, again.token) is ReleaseOutcome.RELEASED
        closing = await backend.open_session(_TTL_S)
        await _granted(
            await backend.acquire(name, closing.id, LockMode.EXCLUSIVE, wait_s=0, lock_delay_s=30)
        )
        await backend.close_session(closing.id)
        # Closing stays idempotent, for closed and for expired sessions.
        await backend.close_session(closing.id)
        await backend.close_session(stale.id)
        last = await _granted(await backend.acquire(name, waiter.id, LockMode.EXCLUSIVE, wait_s=0))
        await backend.release(name, waiter.id, last.token)
    finally:
        await backend.close_session(waiter.id)


async def check_lock_delay_refuses_try(backend: LockBackend) -> None:
    """Check that a try while a lock-delay runs is refused, and granted once it is over."""
    name = _name("lock-delay-try")
    stale = await backend.open_session(2.0)
    other = await backend.open_session(_TTL_S)
    try:
        await _granted(
            await backend.acquire(name, stale.id, LockMode.EXCLUSIVE, wait_s=0, lock_delay_s=3)
        )
        async with asyncio.timeout(_WAIT_S):
            # Polls on purpose: waits, from outside, for the expiry to be noticed.
            while (await backend.describe(name)).holders:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        assert await backend.acquire(name, other.id, LockMode.EXCLUSIVE, wait_s=0) is None
        grant = await _granted(
            await backend.acquire(name, other.id, LockMode.SHARED, wait_s=_WAIT_S)
        )
        await backend.release(name, other.id, grant.token)
    finally:
        await backend.close_session(other.id)


async def check_reentrant_hold_counts(backend: LockBackend) -> None:
    """Check that reentrant acquisitions count holds on one token and releases count them back."""
    name = _name("reentrant")
    owner, other = await backend.open_session(_TTL_S), await backend.open_session(_TTL_S)
    try:
        first = await _granted(await backend.acquire(name, owner.id, LockMode.EXCLUSIVE, wait_s=0))
        assert first.holds == 1
        second = await _granted(
            await backend.acquire(
                name, owner.id, LockMode.EXCLUSIVE, wait_s=0, request_id="r2", reentrant=True
            )
        )
        retried = await _granted(
            await backend.acquire(
                name, owner.id, LockMode.EXCLUSIVE, wait_s=0, request_id="r2", reentrant=True
            )
        )
        assert (second.token, second.holds) == (first.token, 2)
        assert (retried.token, retried.holds) == (first.token, 2), "a retry added a hold"
        third = await _granted(
            await backend.acquire(name, owner.id, LockMode.EXCLUSIVE, wait_s=0, reentrant=True)
        )
        assert (third.token, third.holds) == (first.token, 3)
        try:
            await backend.acquire(name, owner.id, LockMode.EXCLUSIVE, wait_s=0)
        except FailedPreconditionError:
            pass
        else:
            raise AssertionError("a non-reentrant acquisition by the holder succeeded")
        assert [entry.holds for entry in (await backend.describe(name)).holders] == [3]
        waiting = asyncio.ensure_future(
            backend.acquire(name, other.id, LockMode.EXCLUSIVE, wait_s=_WAIT_S)
        )
        await _until_queued(backend, name, 1)
        try:
            await backend.acquire(name, other.id, LockMode.EXCLUSIVE, wait_s=0, reentrant=True)
        except FailedPreconditionError:
            pass
        else:
            raise AssertionError("a waiter reentered a lock it does not hold")
        for _ in range(2):
            outcome = await backend.release(name, owner.id, first.token)
            assert outcome is ReleaseOutcome.DECREMENTED
        assert not waiting.done()
        assert await backend.release(name, owner.id, first.token) is ReleaseOutcome.RELEASED
        successor = await _granted(await waiting)
        assert successor.token > first.token
        assert successor.holds == 1
        await backend.release(name, other.id, successor.token)
    finally:
        await backend.close_session(owner.id)
        await backend.close_session(other.id)


async def _permit(
    backend: LockBackend, name: str, session: str, permits: int, wait_s: float = 0.0
) -> LockGrant | None:
    return await backend.acquire(name, session, LockMode.PERMIT, wait_s=wait_s, permits=permits)


async def check_semaphore_permits(backend: LockBackend) -> None:
    """Check that a semaphore of 2 permits has 2 holders, queues the third, and hands over."""
    name = _name("semaphore")
    a, b, c = [await backend.open_session(_TTL_S) for _ in range(3)]
    try:
        first = await _granted(await _permit(backend, name, a.id, 2))
        second = await _granted(await _permit(backend, name, b.id, 2))
        assert second.token > first.token
        assert second.mode is LockMode.PERMIT
        assert await _permit(backend, name, c.id, 2) is None, "a third permit was granted"
        waiting = asyncio.ensure_future(_permit(backend, name, c.id, 2, _WAIT_S))
        await _until_queued(backend, name, 1)
        state = await backend.describe(name)
        assert state.permits == 2
        assert [(e.session_id, e.mode) for e in state.holders] == [
            (a.id, LockMode.PERMIT),
            (b.id, LockMode.PERMIT),
        ]
        assert [(e.session_id, e.queue_position) for e in state.waiters] == [(c.id, 1)]
        await asyncio.sleep(0.05)
        assert not waiting.done()
        assert await backend.release(name, a.id, first.token) is ReleaseOutcome.RELEASED
        async with asyncio.timeout(_WAIT_S):
            third = await _granted(await waiting)
        assert third.token > second.token
        assert {e.session_id for e in (await backend.describe(name)).holders} == {b.id, c.id}
        assert await backend.release(name, a.id, first.token) is ReleaseOutcome.ALREADY_GONE
    finally:
        for session in (a, b, c):
            await backend.close_session(session.id)
    assert await backend.describe(name) == LockState(name, (), ())


async def check_semaphore_fifo_order(backend: LockBackend) -> None:
    """Check that permit waiters are served in arrival order, whichever permit is given back."""
    name = _name("semaphore-fifo")
    sessions = [await backend.open_session(_TTL_S) for _ in range(5)]
    try:
        grants = [await _granted(await _permit(backend, name, s.id, 2)) for s in sessions[:2]]
        waits = []
        for position, session in enumerate(sessions[2:], start=1):
            waits.append(asyncio.ensure_future(_permit(backend, name, session.id, 2, _WAIT_S)))
            await _until_queued(backend, name, position)
        # Give back the newer permit first, then the older one, then the first waiter's.
        order = [grants[1], grants[0]]
        for index, wait in enumerate(waits):
            await asyncio.sleep(0.05)  # a later waiter jumping the queue would be granted now
            assert not wait.done(), "a waiter was granted while an earlier one still waited"
            released = order[index]
            assert await backend.release(name, released.session_id, released.token) is (
                ReleaseOutcome.RELEASED
            )
            async with asyncio.timeout(_WAIT_S):
                order.append(await _granted(await wait))
            assert all(not later.done() for later in waits[index + 1 :])
    finally:
        for session in sessions:
            await backend.close_session(session.id)


async def check_semaphore_does_not_mix(backend: LockBackend) -> None:
    """Check that permits of another size, or a lock on a semaphore's name, are refused."""
    name, lock_name = _name("semaphore-mix"), _name("lock-not-semaphore")
    a, b = await backend.open_session(_TTL_S), await backend.open_session(_TTL_S)
    try:
        await _granted(await _permit(backend, name, a.id, 2))
        await _granted(await backend.acquire(lock_name, a.id, LockMode.EXCLUSIVE, wait_s=0))
        before = (await backend.describe(name), await backend.describe(lock_name))
        refused = [
            _permit(backend, name, b.id, 3),
            backend.acquire(name, b.id, LockMode.EXCLUSIVE, wait_s=0),
            backend.acquire(name, b.id, LockMode.SHARED, wait_s=0),
            _permit(backend, lock_name, b.id, 2),
        ]
        for attempt in refused:
            try:
                await attempt
            except FailedPreconditionError:
                pass
            else:
                raise AssertionError("a lock and a semaphore, or two sizes, mixed on one name")
        after = (await backend.describe(name), await backend.describe(lock_name))
        assert [[e.session_id for e in s.holders + s.waiters] for s in after] == [
            [e.session_id for e in s.holders + s.waiters] for s in before
        ], "a refused acquisition changed the queue"
    finally:
        await backend.close_session(a.id)
        await backend.close_session(b.id)


async def check_semaphore_permit_freed_with_session(backend: LockBackend) -> None:
    """Check that closing a session gives its permit to the next waiter."""
    name = _name("semaphore-close")
    a, b = await backend.open_session(_TTL_S), await backend.open_session(_TTL_S)
    try:
        held = await _granted(await _permit(backend, name, a.id, 1))
        waiting = asyncio.ensure_future(_permit(backend, name, b.id, 1, _WAIT_S))
        await _until_queued(backend, name, 1)
        await backend.close_session(a.id)
        async with asyncio.timeout(_WAIT_S):
            assert (await _granted(await waiting)).token > held.token
    finally:
        await backend.close_session(a.id)
        await backend.close_session(b.id)


async def check_values_and_proclaim(backend: LockBackend) -> None:
    """Check that values are stored with entries and only a holder can proclaim a new one."""
    name = _name("election")
    a, b = await backend.open_session(_TTL_S), await backend.open_session(_TTL_S)
    try:
        leader = await _granted(
            await backend.acquire(name, a.id, LockMode.EXCLUSIVE, wait_s=0, value=b"a:1")
        )
        waiting = asyncio.ensure_future(
            backend.acquire(name, b.id, LockMode.EXCLUSIVE, wait_s=_WAIT_S, value=b"b:1")
        )
        await _until_queued(backend, name, 1)
        state = await backend.describe(name)
        assert [e.value for e in state.holders + state.waiters] == [b"a:1", b"b:1"]
        assert await backend.proclaim(name, a.id, leader.token, b"a:2")
        assert [e.value for e in (await backend.describe(name)).holders] == [b"a:2"]
        waiter_token = (await backend.describe(name)).waiters[0].token
        assert not await backend.proclaim(name, b.id, waiter_token, b"b:2"), "a waiter proclaimed"
        assert not await backend.proclaim(name, a.id, leader.token + 1000, b"x")
        assert [e.value for e in (await backend.describe(name)).holders] == [b"a:2"]
        await backend.release(name, a.id, leader.token)
        async with asyncio.timeout(_WAIT_S):
            successor = await _granted(await waiting)
        assert not await backend.proclaim(name, a.id, leader.token, b"a:3"), "a stale proclaim"
        state = await backend.describe(name)
        assert [(e.session_id, e.value) for e in state.holders] == [(b.id, b"b:1")]
        assert await backend.proclaim(name, b.id, successor.token, b"")
        assert [e.value for e in (await backend.describe(name)).holders] == [b""]
    finally:
        await backend.close_session(a.id)
        await backend.close_session(b.id)


async def check_observe_sees_every_change(backend: LockBackend) -> None:
    """Check that `observe` yields the state at once and after a grant, a proclaim, a release."""
    name = _name("observe")
    session = await backend.open_session(_TTL_S)
    states = backend.observe(name)
    try:

        async def until(predicate: Callable[[LockState], bool]) -> LockState:
            async with asyncio.timeout(_WAIT_S):
                while not predicate(state := await anext(states)):
                    pass
            return state

        first = await anext(states)
        assert first == LockState(name, (), ())
        grant = await _granted(
            await backend.acquire(name, session.id, LockMode.EXCLUSIVE, wait_s=0, value=b"v1")
        )
        await until(lambda s: [e.value for e in s.holders] == [b"v1"])
        assert await backend.proclaim(name, session.id, grant.token, b"v2")
        await until(lambda s: [e.value for e in s.holders] == [b"v2"])
        await backend.release(name, session.id, grant.token)
        await until(lambda s: not s.holders and not s.waiters)
    finally:
        await states.aclose()
        await backend.close_session(session.id)


async def check_reap_clears_expired_state(backend: LockBackend) -> None:
    """Check that `reap` clears what an expired holder left, on a lock nobody else touches."""
    name = _name("reap")
    stale = await backend.open_session(2.0)
    await _granted(
        await backend.acquire(name, stale.id, LockMode.EXCLUSIVE, wait_s=0, lock_delay_s=0.5)
    )
    await _granted(await _permit(backend, name + "/permits", stale.id, 2))
    reaped = 0
    # Left alone (not even asked for the session's TTL, which may purge) until it expired.
    await asyncio.sleep(stale.ttl_s + 0.5)
    async with asyncio.timeout(_WAIT_S):
        while reaped == 0:
            # etcd: the first pass starts the lock-delay, a later one ends it.
            reaped += await backend.reap()
            await asyncio.sleep(0.3)
    assert await backend.reap() >= 0
    other = await backend.open_session(_TTL_S)
    try:
        for lock in (name, name + "/permits"):
            assert not (await backend.describe(lock)).holders
        async with asyncio.timeout(_WAIT_S):
            grant = await _granted(
                await backend.acquire(name, other.id, LockMode.EXCLUSIVE, wait_s=_WAIT_S)
            )
        await backend.release(name, other.id, grant.token)
    finally:
        await backend.close_session(other.id)


#: Every check of the kit, to parametrize a test with.
LOCK_BACKEND_CHECKS: tuple[Callable[[LockBackend], Awaitable[None]], ...] = (
    check_mutual_exclusion,
    check_fifo_order,
    check_token_monotonicity,
    check_shared_vs_exclusive,
    check_release_outcomes,
    check_retry_is_idempotent,
    check_timeout_leaves_queue,
    check_session_expiry_frees_locks,
    check_waiter_session_expiry_ends_its_wait,
    check_lock_delay,
    check_lock_delay_refuses_try,
    check_reentrant_hold_counts,
    check_semaphore_permits,
    check_semaphore_fifo_order,
    check_semaphore_does_not_mix,
    check_semaphore_permit_freed_with_session,
    check_values_and_proclaim,
    check_observe_sees_every_change,
    check_reap_clears_expired_state,
)
