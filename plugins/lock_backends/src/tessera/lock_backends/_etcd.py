from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import functools
import json
import math
import time
from collections import defaultdict
from collections.abc import AsyncGenerator, Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote, unquote

from tessera.core import (
    BackendError,
    FailedPreconditionError,
    NotFoundError,
    TesseraSettings,
)
from tessera.core.etcd import EtcdClient, prefix_end
from tessera.core.plugins import (
    LockGrant,
    LockMode,
    LockSession,
    LockState,
    ReleaseOutcome,
    Safety,
)
from tessera.lock_backends import _etcd_holds as holds
from tessera.lock_backends._etcd_observe import QueueMirror, observe_queue
from tessera.lock_backends._queue import LockQueue, QueuedEntry
from tessera.lock_backends._queue_watch import QueueItem, QueueWatches


@dataclass(frozen=True, slots=True)
class _Guard:
    """A grant's lock-delay record: outlives the grant's entry when its session expires.

    A voluntary release deletes entry and guard in one transaction, so a guard without its entry
    means an involuntary release. The first contender to notice records when (`seen_at`, wall
    clock); the lock is granted again `delay_s` later.
    """

    key: bytes
    session_id: str
    token: int
    delay_s: float
    seen_at: float | None
    mod_revision: int


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """A lock's queue as read at one etcd revision.

    Attributes:
        entries: The queue.
        revision: The etcd revision of the read.
        delayed: (session, token) of the entries that asked for a lock-delay.
        guards: The lock's lock-delay guards read after the queue, or None when not read.
        items: The queue's keys as read: (key, value, create revision).

    """

    entries: list[QueuedEntry]
    revision: int
    delayed: frozenset[tuple[str, int]]
    guards: list[_Guard] | None = None
    items: tuple[QueueItem, ...] = ()


#: What `_enqueue` answers: the entry's token, the queue right after, the fields of an entry
#: that existed already (None when this call created it).
_Enqueued = tuple[int, _Snapshot, dict[str, Any] | None]

#: Every lock's queue lives under `LOCKS_PREFIX + quote(name) + "/"`, one key per session.
LOCKS_PREFIX = "/tessera/lock/locks/"
#: Lock-delay guards (`_Guard`) live under `DELAYS_PREFIX + quote(name) + "/"`, one per session.
DELAYS_PREFIX = "/tessera/lock/delays/"


class EtcdLockBackend:
    """Locks in etcd, following etcd's own recipe, made fair and told about loss.

    A session is an etcd lease. Acquiring puts the key `<LOCKS_PREFIX><name>/<session>` bound to
    the lease; the key's create revision orders the queue and is the fencing token (etcd's
    revision only grows, and survives restarts and leader changes). Each waiter waits only for the
    deletion of the entry it waits for (`LockQueue.blocker`) or of its own entry, so a release
    wakes one waiter and a waiter whose session expires stops waiting; the deletions reach it
    through one watch per lock and process (`QueueWatch`), which stays synced with etcd. A grant
    with a lock-delay also writes a guard key without lease (`_Guard`); etcd does not time a
    lease's expiry, so the delay runs from when a contender first notices the orphaned guard.
    Safety: linearizable.

    Concurrency: any number of tasks of one event loop; any number of processes and service
    replicas on the same etcd.

    Args:
        settings: `etcd_endpoints` names the cluster.

    """

    safety: ClassVar[Safety] = Safety.LINEARIZABLE

    def __init__(self, settings: TesseraSettings) -> None:
        self._etcd = EtcdClient.from_settings(settings)
        self._watches = QueueWatches(self._etcd)
        self._tasks: set[asyncio.Future[object]] = set()

    async def open_session(self, ttl_s: float) -> LockSession:
        """Grant a lease of `ttl_s` seconds, rounded up; see `LockBackend.open_session`."""
        lease_id, granted = await self._etcd.grant_lease(math.ceil(ttl_s))
        return LockSession(_session_id(lease_id), float(granted))

    async def keep_alive(self, session_id: str) -> float:
        """Send one lease keep-alive; see `LockBackend.keep_alive`."""
        lease_id = _lease_id(session_id)
        if lease_id is None:
            return 0.0
        return float(await self._etcd.refresh_lease(lease_id))

    async def session_ttl(self, session_id: str) -> float:
        """Read the lease's remaining TTL; see `LockBackend.session_ttl`."""
        lease_id = _lease_id(session_id)
        return 0.0 if lease_id is None else await self._lease_ttl(lease_id)

    async def close_session(self, session_id: str) -> None:
        """Revoke the lease, deleting its keys; see `LockBackend.close_session`.

        The session's lock-delay guards go first: closing is a voluntary release.
        """
        lease_id = _lease_id(session_id)
        if lease_id is None:
            return
        info = await self._etcd.execute(lambda c: c.get_lease_info(lease_id, keys=True))
        guards = [
            _guard_key(*_parse_key(key)).encode()
            for key in info.keys
            if key.startswith(LOCKS_PREFIX.encode())
        ]
        if guards:

            def delete_guards(client: Any) -> Any:
                tx = client.transactions
                return client.transaction(
                    compare=[], success=[tx.delete(key) for key in guards], failure=[]
                )

            await self._etcd.execute(delete_guards)
        await self._etcd.revoke_lease(lease_id)

    async def acquire(
        self,
        name: str,
        session_id: str,
        mode: LockMode,
        *,
        wait_s: float,
        request_id: str = "",
        lock_delay_s: float = 0.0,
        reentrant: bool = False,
        permits: int = 0,
        value: bytes = b"",
    ) -> LockGrant | None:
        """Queue the session's key and wait for its blocker to go; see `LockBackend.acquire`.

        The entry's value (mode, request id, lock-delay, permits) also carries the value stored
        with it (`proclaim` rewrites the key, which keeps its create revision: the token).
        """
        lease_id = _lease_id(session_id)
        if lease_id is None:
            raise NotFoundError(f"session {session_id!r} does not exist")
        session_id = _session_id(lease_id)  # one spelling per session, as in its keys
        key = _entry_key(name, session_id)
        fields: dict[str, Any] = {
            "mode": mode.value,
            "request_id": request_id,
            "lock_delay_s": lock_delay_s,
        }
        if permits:
            fields["permits"] = permits
        while True:
            token, queued, existing = await self._enqueue_shielded(
                name, lease_id, {**fields, "value": _encode_value(value)}, request_id
            )
            mine = QueuedEntry(session_id, mode, token, permits)
            if existing is not None:
                existing.pop("value", None)  # proclaimed since: not part of the acquisition
            if existing is None or (request_id and existing == fields):
                conflict = LockQueue(queued.entries).conflict(mine)
                if conflict is not None:
                    if existing is None:
                        await self._dequeue(key, token)
                    raise FailedPreconditionError(conflict)
                break  # a new entry, or a retry of the acquisition that made it
            hold = await holds.read_hold(self._etcd, name, session_id)
            if request_id and hold.request_id == request_id:
                return LockGrant(name, session_id, mode, token, hold.holds)  # retried reentry
            if not reentrant or existing["mode"] != mode.value:
                raise FailedPreconditionError(
                    "the session already holds or waits for this lock; release it first"
                )
            if mine not in LockQueue(queued.entries).holders:
                raise FailedPreconditionError("the session waits for this lock: it cannot reenter")
            more = holds.Hold(hold.holds + 1, request_id, 0)
            hold_key = holds.hold_key(name, session_id)
            if await holds.set_hold(self._etcd, key, token, hold_key, hold, more, lease_id):
                return LockGrant(name, session_id, mode, token, more.holds)
            # A concurrent release or reentry of the same session changed the grant: start over.
        granted = False
        try:
            if wait_s <= 0:
                granted = await self._turn(name, mine, queued, wait=False)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        granted = await self._turn(name, mine, queued, wait=True)
            if granted and lock_delay_s > 0:
                granted = await self._guard(name, mine, lock_delay_s)
                if not granted:
                    raise NotFoundError(f"session {session_id!r} ended while acquiring")
        finally:
            if not granted:
                # Leave the queue on timeout, cancellation or failure, and only our own entry:
                # a concurrent retry may have replaced it.
                await asyncio.shield(self._dequeue(key, token))
        if not granted:
            return None
        return LockGrant(name, session_id, mode, token)

    async def release(self, name: str, session_id: str, token: int) -> ReleaseOutcome:
        """Delete the holder's key if it is still this grant; see `LockBackend.release`.

        A grant held more than once loses one hold instead.
        """
        if await self._release_oldest(name, session_id, token):
            return ReleaseOutcome.RELEASED
        queue = LockQueue(await self._entries(name))
        if any(entry.token == token and entry.session_id == session_id for entry in queue.holders):
            key = _entry_key(name, session_id)
            hold = await holds.read_hold(self._etcd, name, session_id)
            if hold.holds > 1:
                less = holds.Hold(hold.holds - 1, hold.request_id, 0)
                lease_id = _lease_id(session_id) or 0
                hold_key = holds.hold_key(name, session_id)
                if await holds.set_hold(self._etcd, key, token, hold_key, hold, less, lease_id):
                    return ReleaseOutcome.DECREMENTED
                return await self.release(name, session_id, token)  # raced: look again
            deleted = await self._dequeue(key, token)
            return ReleaseOutcome.RELEASED if deleted else ReleaseOutcome.ALREADY_GONE
        mine = queue.find(session_id)
        if mine is not None and mine.token == token:
            return ReleaseOutcome.NOT_HOLDER  # still waiting: cancel the Acquire instead
        if any(entry.token == token for entry in queue.holders + queue.waiters):
            return ReleaseOutcome.NOT_HOLDER  # another session's grant
        return ReleaseOutcome.ALREADY_GONE

    async def proclaim(self, name: str, session_id: str, token: int, value: bytes) -> bool:
        """Rewrite the holder's entry with the new value; see `LockBackend.proclaim`."""
        lease_id = _lease_id(session_id)
        if lease_id is None:
            return False
        session_id = _session_id(lease_id)
        key = _entry_key(name, session_id).encode()
        found = await self._etcd.get(key)
        if found is None or found.create_revision != token:
            return False
        if _parse(key, found.value, token)[1] not in LockQueue(await self._entries(name)).holders:
            return False
        fields = {**json.loads(found.value), "value": _encode_value(value)}

        def put_if_same(client: Any) -> Any:
            tx = client.transactions
            # Still the same grant: a holder keeps holding until its entry is deleted.
            return client.transaction(
                compare=[tx.create(key) == token],
                success=[tx.put(key, json.dumps(fields).encode(), lease=lease_id)],
                failure=[],
            )

        stored, _ = await self._etcd.execute(put_if_same)
        return bool(stored)

    async def observe(self, name: str) -> AsyncGenerator[LockState, None]:
        """Yield the lock's state, then again after each change of its queue.

        See `LockBackend.observe`. One etcd watch of the queue prefix, from the revision of the
        first read: entries queued, leaving and proclaimed are all changes of its keys. The
        queue is kept from the watch's events (`QueueMirror`), so a change costs no queue read
        and reads only the leases of new entries and new holders (not one per entry).
        """

        async def lease_ttl(session_id: str) -> float:
            lease_id = _lease_id(session_id)
            return 0.0 if lease_id is None else await self._lease_ttl(lease_id)

        async def hold_counts() -> dict[str, int]:
            return (await holds.read_holds(self._etcd, name)).get(name, {})

        def parse(key: bytes, value: bytes, create_revision: int) -> tuple[QueuedEntry, bytes]:
            return _parse(key, value, create_revision)[1], _decode_value(value)

        mirror = QueueMirror(name, parse, lease_ttl, hold_counts)
        states = observe_queue(self._etcd, _queue_prefix(name), mirror)
        async with contextlib.aclosing(states):
            async for state in states:
                yield state

    async def reap(self) -> int:
        """Start and end the lock-delays of expired holders; see `LockBackend.reap`.

        etcd deletes an expired session's entries itself (they are bound to its lease); what
        it leaves behind are the lock-delay guards of entries that expired. A guard whose entry
        is gone gets its `seen_at`, and is deleted once its delay passed.
        """
        read = await self._etcd.get_prefix(DELAYS_PREFIX)
        names = {
            unquote(i.key.decode()[len(DELAYS_PREFIX) :].rpartition("/")[0]) for i in read.items
        }
        deleted = 0
        for name in sorted(names):
            snapshot = await self._read(name, with_guards=True)
            before = len(snapshot.guards or ())
            await self._delay_left(name, snapshot, set())
            after = await self._etcd.get_prefix(_guards_prefix(name))
            deleted += max(before - len(after.items), 0)
        return deleted

    async def describe(self, name: str) -> LockState:
        """Read one lock's queue and its sessions' lease TTLs; see `LockBackend.describe`."""
        counts = (await holds.read_holds(self._etcd, name)).get(name, {})
        found = await self._entries_with_values(name)
        values = {entry.session_id: value for entry, value in found}
        return await self._state(name, [entry for entry, _ in found], counts, values)

    async def list_locks(self, prefix: str) -> list[LockState]:
        """Read every queue under the prefix at one revision; see `LockBackend.list_locks`."""
        snapshot = await self._etcd.get_prefix(LOCKS_PREFIX + quote(prefix, safe=""))
        by_name: dict[str, list[QueuedEntry]] = defaultdict(list)
        values: dict[str, dict[str, bytes]] = defaultdict(dict)
        for item in snapshot.items:
            name, entry = _parse(item.key, item.value, item.create_revision)
            by_name[name].append(entry)
            values[name][entry.session_id] = _decode_value(item.value)
        counts = await holds.read_holds(self._etcd, prefix)
        return [
            await self._state(name, entries, counts.get(name, {}), values[name])
            for name, entries in sorted(by_name.items())
        ]

    async def close(self) -> None:
        """Close the etcd client; sessions expire with their leases."""
        await self._etcd.close()

    async def _enqueue(
        self, name: str, lease_id: int, fields: dict[str, Any], request_id: str
    ) -> tuple[int, _Snapshot, dict[str, Any] | None]:
        """Put the session's key if absent.

        Returns:
            Its token, the queue right after, and the entry's fields when it existed already.

        """
        key = _entry_key(name, _session_id(lease_id)).encode()
        prefix = _queue_prefix(name).encode()
        guards = _guards_prefix(name).encode()
        value = json.dumps(fields).encode()

        def put_if_absent(client: Any) -> Any:
            tx = client.transactions
            # Reading the queue (and its lock-delay guards) in the same transaction saves the
            # first wait a round trip.
            read = [
                tx.get(key),
                tx.get(prefix, prefix_end(prefix)),
                tx.get(guards, prefix_end(guards)),
            ]
            return client.transaction(
                compare=[tx.create(key) == 0],
                success=[tx.put(key, value, lease=lease_id), *read],
                failure=read,
            )

        try:
            # With a request id a repeated put finds its own entry and returns the same token.
            created, responses = await self._etcd.execute(
                put_if_absent, idempotent=bool(request_id)
            )
        except BackendError as error:
            if "lease not found" in error.message:
                raise NotFoundError(f"session {_session_id(lease_id)!r} does not exist") from error
            raise
        found, queue, guard_kvs = responses[-3:]
        existing_value, meta = found[0]
        snapshot = _snapshot(
            [(kv.key, kv_value, kv.create_revision) for kv_value, kv in queue],
            int(meta.header.revision),
        )
        snapshot = dataclasses.replace(
            snapshot,
            guards=[_parse_guard(kv.key, kv_value, kv.mod_revision) for kv_value, kv in guard_kvs],
        )
        existing = None if created else json.loads(existing_value)
        return int(meta.create_revision), snapshot, existing

    async def _enqueue_shielded(
        self, name: str, lease_id: int, fields: dict[str, Any], request_id: str
    ) -> _Enqueued:
        """`_enqueue`, finished even when the caller is cancelled meanwhile.

        A cancelled acquisition whose put still lands would leave its entry queued until its
        session ends, blocking everyone behind it: the put is left to complete, and the entry it
        created is deleted then.
        """
        enqueue = asyncio.ensure_future(self._enqueue(name, lease_id, fields, request_id))
        try:
            return await asyncio.shield(enqueue)
        except asyncio.CancelledError:
            key = _entry_key(name, _session_id(lease_id))

            def withdraw(done: asyncio.Future[_Enqueued]) -> None:
                if done.cancelled() or done.exception() is not None:
                    return
                token, _, existing = done.result()
                if existing is None:  # this call created the entry
                    self._background(self._dequeue(key, token))

            enqueue.add_done_callback(withdraw)
            raise

    def _background(self, work: Coroutine[Any, Any, object]) -> None:
        """Run `work` on its own, keeping a reference until it ends."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)

        def finished(task: asyncio.Future[object]) -> None:
            self._tasks.discard(task)
            # A failure leaves the entry to its session's expiry, as a lost connection would.
            if not task.cancelled():
                task.exception()

        task.add_done_callback(finished)

    async def _release_oldest(self, name: str, session_id: str, token: int) -> bool:
        """Delete the entry in one round trip if it is this grant and the oldest of the queue.

        The oldest entry always holds the lock, so this is a release; shared holders behind
        another shared one take the slower path of `release`.
        """
        key = _entry_key(name, session_id).encode()
        prefix = _queue_prefix(name).encode()
        hold_key = holds.hold_key(name, session_id).encode()

        def delete_if_oldest(client: Any) -> Any:
            tx = client.transactions
            return client.transaction(
                compare=[
                    tx.create(key) == token,
                    # Every entry of the queue was created at or after this one.
                    tx.create(prefix, prefix_end(prefix)) > token - 1,
                    # Held once: a grant held more than once only loses a hold.
                    tx.version(hold_key) == 0,
                ],
                success=[tx.delete(key), tx.delete(_guard_key(name, session_id).encode())],
                failure=[],
            )

        deleted, _ = await self._etcd.execute(delete_if_oldest)
        return bool(deleted)

    async def _dequeue(self, key: str, token: int) -> bool:
        """Delete `key`, its guard and its hold count if it is still the entry `token`."""
        key_bytes = key.encode()
        guard = _guard_key(*_parse_key(key_bytes)).encode()
        hold = holds.hold_key(*_parse_key(key_bytes)).encode()

        def delete_if_same(client: Any) -> Any:
            tx = client.transactions
            return client.transaction(
                compare=[tx.create(key_bytes) == token],
                success=[tx.delete(key_bytes), tx.delete(guard), tx.delete(hold)],
                failure=[],
            )

        deleted, _ = await self._etcd.execute(delete_if_same)
        return bool(deleted)

    async def _turn(self, name: str, mine: QueuedEntry, snapshot: _Snapshot, *, wait: bool) -> bool:
        """Return whether `mine` holds the lock, waiting for it if `wait`.

        Args:
            name: The lock.
            mine: The entry of the session.
            snapshot: The queue as last read.
            wait: Whether to wait; False decides from `snapshot` alone.

        Raises:
            NotFoundError: The session ended (its entry is gone).

        """
        # Entries ahead that asked for a lock-delay: only when one of them left are the guards
        # worth reading, so locks without lock-delay pay nothing for it.
        delayed = set(snapshot.delayed)
        blockers = _blockers(mine, snapshot)
        if blockers:
            if not wait:
                return False
            prefix = _queue_prefix(name)
            start = snapshot.revision + 1
            async with self._watches.using(prefix, start, snapshot.items) as watch:
                while blockers:
                    keys = [_entry_key(name, b.session_id) for b in (*blockers, mine)]
                    after = await watch.deleted_after(
                        tuple(key.encode() for key in keys), snapshot.revision
                    )
                    # The watch hands over the queue right after the deletion that woke us.
                    if after is not None:
                        snapshot = _snapshot(list(after.items), after.revision)
                    else:
                        snapshot = await self._read(name, with_guards=False)
                    delayed |= snapshot.delayed
                    blockers = _blockers(mine, snapshot)
        # Nobody can queue ahead of `mine` any more; only a lock-delay may still hold it back.
        while (left := await self._delay_left(name, snapshot, delayed)) > 0:
            if not wait:
                return False
            await asyncio.sleep(left)
            snapshot = await self._read(name, with_guards=True)
            _blockers(mine, snapshot)  # raises if the session ended meanwhile
        return True

    async def _read(self, name: str, *, with_guards: bool) -> _Snapshot:
        """Read the queue, then (if `with_guards`) the guards: a guard is never older than it."""
        read = await self._etcd.get_prefix(_queue_prefix(name))
        snapshot = _snapshot(
            [(i.key, i.value, i.create_revision) for i in read.items], read.revision
        )
        if not with_guards:
            return snapshot
        guards = await self._etcd.get_prefix(_guards_prefix(name))
        return dataclasses.replace(
            snapshot, guards=[_parse_guard(i.key, i.value, i.mod_revision) for i in guards.items]
        )

    async def _delay_left(
        self, name: str, snapshot: _Snapshot, delayed: set[tuple[str, int]]
    ) -> float:
        """Return the seconds a lock-delay still holds the lock back after `snapshot`.

        Starts the delay of each orphaned guard (recording when it was first seen) and deletes
        the guards whose delay is over.

        Args:
            name: The lock.
            snapshot: The latest read of the queue; it is read again with its guards if they
                are missing and an entry of `delayed` left.
            delayed: Every (session, token) with a lock-delay seen in the queue while waiting.

        """
        if snapshot.guards is None:
            if delayed <= {(entry.session_id, entry.token) for entry in snapshot.entries}:
                return 0.0
            snapshot = await self._read(name, with_guards=True)
        present = {(entry.session_id, entry.token) for entry in snapshot.entries}
        now = time.time()
        left = 0.0
        for guard in snapshot.guards or ():
            # A guard newer than the read may belong to a grant the read did not see yet.
            if (guard.session_id, guard.token) in present or guard.token > snapshot.revision:
                continue
            seen_at = guard.seen_at
            if seen_at is None:
                seen_at = now
                await self._update_guard(guard, {"seen_at": now})
            remaining = seen_at + guard.delay_s - now
            if remaining > 0:
                left = max(left, remaining)
            else:
                await self._update_guard(guard, None)
        return left

    async def _guard(self, name: str, mine: QueuedEntry, lock_delay_s: float) -> bool:
        """Write the lock-delay guard of a grant; return False if its entry is gone already."""
        key = _entry_key(name, mine.session_id).encode()
        value = json.dumps({"token": mine.token, "lock_delay_s": lock_delay_s}).encode()

        def put_if_held(client: Any) -> Any:
            tx = client.transactions
            guard = _guard_key(name, mine.session_id).encode()
            return client.transaction(
                compare=[tx.create(key) == mine.token], success=[tx.put(guard, value)], failure=[]
            )

        written, _ = await self._etcd.execute(put_if_held)
        return bool(written)

    async def _update_guard(self, guard: _Guard, fields: dict[str, float] | None) -> None:
        """Add `fields` to a guard, or delete it (None), unless it changed since it was read."""
        value = json.dumps(
            {"token": guard.token, "lock_delay_s": guard.delay_s, **(fields or {})}
        ).encode()

        def update_if_same(client: Any) -> Any:
            tx = client.transactions
            change = tx.delete(guard.key) if fields is None else tx.put(guard.key, value)
            return client.transaction(
                compare=[tx.mod(guard.key) == guard.mod_revision], success=[change], failure=[]
            )

        # Losing the race is fine: whoever changed the guard saw it no later than we did.
        await self._etcd.execute(update_if_same)

    async def _entries(self, name: str) -> list[QueuedEntry]:
        return [entry for entry, _ in await self._entries_with_values(name)]

    async def _entries_with_values(self, name: str) -> list[tuple[QueuedEntry, bytes]]:
        snapshot = await self._etcd.get_prefix(_queue_prefix(name))
        return [
            (_parse(i.key, i.value, i.create_revision)[1], _decode_value(i.value))
            for i in snapshot.items
        ]

    async def _state(
        self,
        name: str,
        entries: list[QueuedEntry],
        counts: dict[str, int],
        values: dict[str, bytes] | None = None,
    ) -> LockState:
        expires: dict[str, float | None] = {}
        for entry in entries:
            lease_id = _lease_id(entry.session_id)
            ttl = 0.0 if lease_id is None else await self._lease_ttl(lease_id)
            expires[entry.session_id] = ttl or None
        return LockQueue(entries).state(name, expires, counts, values)

    async def _lease_ttl(self, lease_id: int) -> float:
        info = await self._etcd.execute(lambda c: c.get_lease_info(lease_id, keys=False))
        # etcd answers TTL -1 for a lease it does not know (expired or revoked).
        return max(float(info.TTL), 0.0)


def _blockers(mine: QueuedEntry, snapshot: _Snapshot) -> tuple[QueuedEntry, ...]:
    """Return the entries `mine` waits for; raise NotFoundError if `mine` left the queue."""
    queue = LockQueue(snapshot.entries)
    if queue.find(mine.session_id) != mine:
        raise NotFoundError(f"session {mine.session_id!r} ended while waiting")
    return queue.blockers(mine)


def _session_id(lease_id: int) -> str:
    # Fixed width, so that one session's key is never a prefix of another's (watches are by
    # prefix).
    return f"{lease_id:016x}"


def _lease_id(session_id: str) -> int | None:
    if len(session_id) != 16:
        return None
    try:
        return int(session_id, 16)
    except ValueError:
        return None


def _queue_prefix(name: str) -> str:
    return f"{LOCKS_PREFIX}{quote(name, safe='')}/"


def _entry_key(name: str, session_id: str) -> str:
    return _queue_prefix(name) + session_id


def _guards_prefix(name: str) -> str:
    return f"{DELAYS_PREFIX}{quote(name, safe='')}/"


def _guard_key(name: str, session_id: str) -> str:
    return _guards_prefix(name) + session_id


def _parse_key(key: bytes) -> tuple[str, str]:
    """Return the lock name and session of an entry's key."""
    encoded_name, _, session_id = key.decode()[len(LOCKS_PREFIX) :].rpartition("/")
    return unquote(encoded_name), session_id


def _parse(key: bytes, value: bytes, create_revision: int) -> tuple[str, QueuedEntry]:
    """Return the lock name and queue entry stored in one key."""
    name, session_id = _parse_key(key)
    fields = json.loads(value)
    mode = LockMode(fields["mode"])
    return name, QueuedEntry(session_id, mode, create_revision, int(fields.get("permits", 0)))


def _encode_value(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _decode_value(entry_value: bytes) -> bytes:
    """Return the value stored with an entry (b"" when none)."""
    return base64.b64decode(json.loads(entry_value).get("value", ""))


def _snapshot(items: list[tuple[bytes, bytes, int]], revision: int) -> _Snapshot:
    """Build a snapshot (without guards) from the (key, value, create revision) of a queue."""
    parsed = [_queued(key, value, created) for key, value, created in items]
    entries = [entry for entry, _ in parsed]
    delayed = frozenset((entry.session_id, entry.token) for entry, delays in parsed if delays)
    return _Snapshot(entries, revision, delayed, items=tuple(items))


@functools.lru_cache(maxsize=4096)
def _queued(key: bytes, value: bytes, create_revision: int) -> tuple[QueuedEntry, bool]:
    """Return the entry one key holds and whether it asked for a lock-delay.

    Cached: every waiter woken on a busy lock reads the same entries again.
    """
    entry = _parse(key, value, create_revision)[1]
    return entry, json.loads(value).get("lock_delay_s", 0) > 0


def _parse_guard(key: bytes, value: bytes, mod_revision: int) -> _Guard:
    fields = json.loads(value)
    return _Guard(
        key,
        key.decode().rpartition("/")[2],
        int(fields["token"]),
        float(fields["lock_delay_s"]),
        fields.get("seen_at"),
        mod_revision,
    )
