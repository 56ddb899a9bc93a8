from __future__ import annotations

from tessera.core.plugins import LockMode
from tessera.lock_backends import LockQueue, QueuedEntry

X, S = LockMode.EXCLUSIVE, LockMode.SHARED


def entry(session: str, mode: LockMode, token: int) -> QueuedEntry:
    return QueuedEntry(session, mode, token)


def test_lock_queue_head_exclusive_holds_alone() -> None:
    a, b, c = entry("a", X, 5), entry("b", S, 7), entry("c", X, 9)
    queue = LockQueue([c, a, b])
    assert queue.holders == (a,)
    assert queue.waiters == (b, c)
    assert queue.blocker(a) is None
    assert queue.blocker(b) is a
    assert queue.blocker(c) is b


def test_lock_queue_leading_shared_entries_hold_together() -> None:
    a, b, c, d = entry("a", S, 1), entry("b", S, 2), entry("c", X, 3), entry("d", S, 4)
    queue = LockQueue([a, b, c, d])
    assert queue.holders == (a, b)
    assert queue.waiters == (c, d)
    # A writer waits for its immediate predecessor; a reader only for the last earlier writer.
    assert queue.blocker(c) is b
    assert queue.blocker(d) is c
    assert queue.blocker(b) is None


def test_lock_queue_describe_numbers_waiters_from_one() -> None:
    queue = LockQueue([entry("a", X, 1), entry("b", X, 2), entry("c", X, 3)])
    holders, waiters = queue.describe({"a": 4.0})
    assert [(h.session_id, h.queue_position, h.lease_expires_in_s) for h in holders] == [
        ("a", 0, 4.0)
    ]
    assert [(w.session_id, w.queue_position) for w in waiters] == [("b", 1), ("c", 2)]


def test_lock_queue_empty_and_find() -> None:
    queue = LockQueue([])
    assert queue.holders == ()
    assert queue.waiters == ()
    assert queue.find("a") is None


P = LockMode.PERMIT


def permit(session: str, token: int, permits: int = 2) -> QueuedEntry:
    return QueuedEntry(session, P, token, permits)


def test_lock_queue_first_permits_hold_and_waiters_wait_for_anyone_ahead() -> None:
    a, b, c, d = permit("a", 1), permit("b", 2), permit("c", 3), permit("d", 4)
    queue = LockQueue([d, c, b, a])
    assert queue.permits == 2
    assert queue.holders == (a, b)
    assert queue.waiters == (c, d)
    assert queue.blockers(a) == ()
    assert queue.blockers(c) == (a, b)
    assert queue.blockers(d) == (a, b, c)


def test_lock_queue_conflict_rejects_mixing_and_other_sizes_from_earlier_entries() -> None:
    lock = entry("x", X, 1)
    assert LockQueue([lock]).conflict(permit("p", 0)) is not None
    assert LockQueue([permit("p", 1)]).conflict(entry("x", S, 0)) is not None
    assert LockQueue([permit("p", 1)]).conflict(permit("q", 0, 3)) == (
        "the semaphore has 2 permits, not 3"
    )
    assert LockQueue([permit("p", 1)]).conflict(permit("q", 0)) is None
    # A later conflicting entry does not count: it sees the earlier one and leaves.
    assert LockQueue([permit("p", 1), entry("x", X, 2)]).conflict(permit("p", 1)) is None
