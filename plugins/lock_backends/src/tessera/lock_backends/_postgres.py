from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
from collections import defaultdict
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar, NamedTuple

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

from tessera.core import (
    BackendError,
    FailedPreconditionError,
    NotFoundError,
    TesseraSettings,
)
from tessera.core.plugins import LockGrant, LockMode, LockSession, LockState, ReleaseOutcome, Safety
from tessera.lock_backends import _postgres_sql as sql
from tessera.lock_backends._queue import LockQueue, QueuedEntry

# As in the Redis backend: a waiter looks again this long after a lease should have ended.
_EXPIRY_SLACK_S = 0.05


class PostgresSettings(TesseraSettings):
    """Where the PostgreSQL lock backend keeps its tables (`TESSERA_POSTGRES_DSN`)."""

    postgres_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    """libpq connection URL of the database holding schema `tessera_lock`."""


class PostgresLockBackend:
    """Locks in PostgreSQL tables: fair and fenced while one primary serves them.

    Sessions and queue entries are rows (schema `tessera_lock`, created on first use); a session
    expires by PostgreSQL's clock and its entries go with it. Tokens come from one sequence, drawn
    under a per-lock advisory transaction lock so that a lock's tokens become visible in order.
    Every entry that leaves a queue is announced with NOTIFY; waiters sleep on one LISTEN
    connection per backend until the entry they wait for leaves or its lease ends.

    Safety: single primary. Mutual exclusion and token order hold while one primary serves the
    tables; a fail-over to an asynchronous replica may lose recent grants and sequence values.

    Lock-delay: purging an expired holder that asked for one writes the time (its expiry plus
    the delay, by PostgreSQL's clock) before which its lock is granted to nobody.

    Args:
        settings: The process settings; `postgres_dsn` is read from them when they are
            `PostgresSettings`, else from the environment.
        dsn: Overrides the connection URL.

    """

    safety: ClassVar[Safety] = Safety.SINGLE_PRIMARY

    def __init__(self, settings: TesseraSettings, *, dsn: str | None = None) -> None:
        if dsn is None:
            source = settings if isinstance(settings, PostgresSettings) else None
            dsn = (source or PostgresSettings.from_env()).postgres_dsn
        self._dsn = dsn
        self._pool: Any = None
        self._listener: Any = None
        self._starting = asyncio.Lock()
        self._waiters: dict[str, list[_Interest]] = defaultdict(list)

    async def open_session(self, ttl_s: float) -> LockSession:
        """Insert a session row; see `LockBackend.open_session`."""
        session_id = secrets.token_hex(8)
        ttl_ms = math.ceil(ttl_s) * 1000
        async with self._connection() as conn:
            await conn.execute(sql.OPEN_SESSION, session_id, ttl_ms)
        return LockSession(session_id, ttl_ms / 1000)

    async def keep_alive(self, session_id: str) -> float:
        """Move the session's expiry; see `LockBackend.keep_alive`."""
        async with self._connection() as conn:
            ttl_ms = await conn.fetchval(sql.KEEP_ALIVE, session_id)
        return 0.0 if ttl_ms is None else ttl_ms / 1000

    async def session_ttl(self, session_id: str) -> float:
        """Read the session's time left; see `LockBackend.session_ttl`."""
        async with self._connection() as conn:
            left_ms = await conn.fetchval(sql.SESSION_TTL_MS, session_id)
        return 0.0 if left_ms is None else float(left_ms) / 1000

    async def close_session(self, session_id: str) -> None:
        """Delete the session and its entries; see `LockBackend.close_session`."""
        async with self._connection() as conn, conn.transaction():
            await conn.execute(sql.LEAVE_ALL, session_id)
            await conn.execute(sql.CLOSE_SESSION, session_id)

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
        """Insert the session's entry and wait on NOTIFY; see `LockBackend.acquire`.

        A lock nobody queues for is taken in one statement (`take_free`); else one transaction
        of four statements queues the entry. A try (`wait_s` <= 0) that would wait queues nothing.
        """
        mine = QueuedEntry(session_id, mode, 0, permits)
        joined = await self._enqueue(
            name,
            mine,
            request_id,
            round(lock_delay_s * 1000),
            value,
            reentrant=reentrant,
            waits=wait_s > 0,
        )
        if joined.holds:
            return LockGrant(name, session_id, mode, joined.token, joined.holds)
        if joined.holding:
            return LockGrant(name, session_id, mode, joined.token)
        if not joined.token:
            return None
        mine = QueuedEntry(session_id, mode, joined.token, permits)
        granted = False
        try:
            if wait_s <= 0:
                granted = await self._turn(name, mine, wait=False)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        granted = await self._turn(name, mine, wait=True)
        finally:
            if not granted:
                await asyncio.shield(self._dequeue(name, session_id, joined.token))
        return LockGrant(name, session_id, mode, joined.token) if granted else None

    async def release(self, name: str, session_id: str, token: int) -> ReleaseOutcome:
        """Delete the entry if it is this session's holding grant; see `LockBackend.release`.

        A grant held more than once loses one hold instead. The head of a queue is released in one
        statement; else two, without a transaction: whether the entry holds depends only on
        entries before it, and those are all visible (an entry is queued under the lock's
        advisory lock, after every earlier one committed).
        """
        async with self._connection(purge=False) as conn:
            if (await conn.fetchrow(sql.RELEASE_HEAD, name, session_id, token))["released"]:
                return ReleaseOutcome.RELEASED
            rows = [row for row in await conn.fetch(sql.RELEASING, name) if row["session_id"]]
            queue = LockQueue(_entry(row) for row in rows)
            if any(e.session_id == session_id and e.token == token for e in queue.holders):
                holds = next(row["holds"] for row in rows if row["session_id"] == session_id)
                if holds > 1:
                    await conn.execute(sql.CHANGE_HOLDS, name, session_id, "", -1)
                    return ReleaseOutcome.DECREMENTED
                await conn.execute(sql.DELETE_ENTRY, name, session_id, token)
                return ReleaseOutcome.RELEASED
            if any(e.token == token for e in queue.waiters):
                return ReleaseOutcome.NOT_HOLDER
            if any(e.token == token for e in queue.holders):
                return ReleaseOutcome.NOT_HOLDER  # another session's grant
        return ReleaseOutcome.ALREADY_GONE

    async def proclaim(self, name: str, session_id: str, token: int, value: bytes) -> bool:
        """Store the value of a holding grant; see `LockBackend.proclaim`."""
        async with self._connection() as conn, conn.transaction():
            await conn.execute(sql.LOCK_NAME, name)
            holders = LockQueue(_entry(row) for row in await conn.fetch(sql.QUEUE, name)).holders
            if not any(e.session_id == session_id and e.token == token for e in holders):
                return False
            await conn.execute(sql.PROCLAIM, name, session_id, token, value)
            await conn.execute(sql.ANNOUNCE, name, session_id, "proclaimed")
        return True

    async def observe(self, name: str) -> AsyncGenerator[LockState, None]:
        """Yield the lock's state, then again after each NOTIFY about it.

        See `LockBackend.observe`. Also looks when the earliest lease of the queue should have
        ended: an expired entry leaves (and is announced) only at the next purge.
        """
        while True:
            interest = _Interest()
            self._waiters[name].append(interest)
            try:
                # Registered before the read: a NOTIFY after the read is not missed.
                state = await self.describe(name)
                yield state
                leases = [e.lease_expires_in_s or 0.0 for e in state.holders + state.waiters]
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(leases) + _EXPIRY_SLACK_S if leases else None):
                        await interest.woken
            finally:
                self._forget(name, interest)

    async def reap(self) -> int:
        """Delete expired sessions, their entries and lock-delays over; see `LockBackend.reap`."""
        async with self._connection(purge=False) as conn, conn.transaction():
            dead = int(await conn.fetchval(sql.PURGE))
            status = await conn.execute(sql.PURGE_SESSIONS)
        return dead + int(status.rpartition(" ")[2] or 0)

    async def describe(self, name: str) -> LockState:
        """Read one lock's live entries; see `LockBackend.describe`."""
        async with self._connection() as conn:
            return _state(name, await conn.fetch(sql.QUEUE, name))

    async def list_locks(self, prefix: str) -> list[LockState]:
        """Read every lock whose name starts with `prefix`; see `LockBackend.list_locks`."""
        async with self._connection() as conn:
            names = [row["name"] for row in await conn.fetch(sql.NAMES, prefix)]
            states = [_state(name, await conn.fetch(sql.QUEUE, name)) for name in names]
        return [state for state in states if state.holders or state.waiters]

    async def close(self) -> None:
        """Close the pool and the listener; sessions expire with their rows."""
        if self._listener is not None:
            await self._listener.close()
        if self._pool is not None:
            await self._pool.close()

    async def _enqueue(
        self,
        name: str,
        new: QueuedEntry,
        request_id: str,
        lock_delay_ms: int,
        value: bytes,
        *,
        reentrant: bool,
        waits: bool,
    ) -> _Joined:
        """Insert the session's entry (`new`, token unset), or add a hold when `reentrant`.

        A new entry that would not hold at once is queued only when the caller `waits`.
        """
        session_id, mode = new.session_id, new.mode
        # The parameters of TAKE_FREE and of INSERT_ENTRY: the entry as it would be stored.
        entry = (name, session_id, mode.value, request_id, lock_delay_ms, new.permits, value)
        async with self._connection(purge=False) as conn:
            # A permit of a semaphore without permits never holds: only the general way says so.
            if mode is not LockMode.PERMIT or new.permits > 0:
                token = await conn.fetchval(sql.TAKE_FREE, *entry)
                if token is not None:
                    return _Joined(int(token), 0, holding=True)
        async with self._connection(purge=False) as conn, conn.transaction():
            if (await conn.fetchrow(sql.ENTER, name, session_id))["live_ms"] is None:
                raise NotFoundError(f"session {session_id!r} does not exist")
            rows = await conn.fetch(sql.JOINING, name)
            delay_s = float(rows[0]["delay_left_s"] or 0.0)
            rows = [row for row in rows if row["session_id"]]
            entries = [_entry(row) for row in rows]
            queue = LockQueue(entries)
            existing = next((row for row in rows if row["session_id"] == session_id), None)
            if existing is None:
                conflict = queue.conflict(new)
                if conflict is not None:
                    raise FailedPreconditionError(conflict)
                # Tokens of one lock are drawn in order under its advisory lock: the new entry
                # comes last, after every entry read.
                token = 1 + max((e.token for e in entries), default=0)
                last = QueuedEntry(session_id, mode, token, new.permits)
                holding = not LockQueue([*entries, last]).blockers(last) and delay_s <= 0
                if not (holding or waits):
                    return _Joined(0, 0, holding=False)
                token = await conn.fetchval(sql.INSERT_ENTRY, *entry)
                return _Joined(int(token), 0, holding=holding)
            token = int(existing["token"])
            if request_id and existing["reentry_request_id"] == request_id:
                return _Joined(token, int(existing["holds"]), holding=True)
            same = (existing["mode"], existing["request_id"], existing["lock_delay_ms"])
            if request_id and same == (mode.value, request_id, lock_delay_ms):
                return _Joined(token, 0, holding=False)
            mine = QueuedEntry(session_id, mode, token)
            if reentrant and mine in queue.holders:
                holds = await conn.fetchval(sql.CHANGE_HOLDS, name, session_id, request_id, 1)
                return _Joined(token, int(holds), holding=True)
        raise FailedPreconditionError(
            "the session already holds or waits for this lock; release it first"
        )

    async def _dequeue(self, name: str, session_id: str, token: int) -> None:
        async with self._connection() as conn:
            await conn.execute(sql.DELETE_ENTRY, name, session_id, token)

    async def _turn(self, name: str, mine: QueuedEntry, *, wait: bool) -> bool:
        while True:
            interest = _Interest()
            self._waiters[name].append(interest)
            try:
                # Registered before the read: a NOTIFY after the read is not missed.
                async with self._connection() as conn:
                    rows = await conn.fetch(sql.QUEUE, name)
                state = _state(name, rows)
                delay_s = float(rows[0]["delay_left_s"] or 0.0) if rows else 0.0
                entries = [*state.holders, *state.waiters]
                queue = LockQueue(_entry(row) for row in rows)
                if queue.find(mine.session_id) != mine:
                    raise NotFoundError(f"session {mine.session_id!r} ended while waiting")
                blockers = queue.blockers(mine)
                if not blockers and delay_s <= 0:
                    return True
                if not wait:
                    return False
                if not blockers:
                    # A lock-delay holds the lock back: nothing to be told, only time to let pass.
                    await asyncio.sleep(delay_s)
                    continue
                interest.watched = frozenset(e.session_id for e in (*blockers, mine))
                left = [
                    e.lease_expires_in_s or 0.0 for e in entries if e.session_id in interest.watched
                ]
                # Wake on the NOTIFY, or when a lease ends (its rows go at the next purge).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(left) + _EXPIRY_SLACK_S):
                        await interest.woken
            finally:
                self._forget(name, interest)

    def _forget(self, name: str, interest: _Interest) -> None:
        interest.woken.cancel()
        self._waiters[name].remove(interest)
        if not self._waiters[name]:
            del self._waiters[name]

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        change = json.loads(payload)
        for interest in self._waiters.get(change["name"], ()):
            interest.wake_for(change["session"], left="event" not in change)

    @asynccontextmanager
    async def _connection(self, *, purge: bool = True) -> AsyncIterator[Any]:
        """Lend a pooled connection after purging expired sessions; errors become BackendError."""
        try:
            pool = await self._start()
            async with pool.acquire() as conn:
                if purge:
                    async with conn.transaction():
                        await conn.execute(sql.PURGE)
                        await conn.execute(sql.PURGE_SESSIONS)
                yield conn
        except (OSError, asyncpg.InterfaceError) as error:
            raise BackendError(f"postgres: {error}", backend="postgres") from error
        except asyncpg.PostgresError as error:
            # The server refused the statement: retrying the same call cannot help.
            raise BackendError(f"postgres: {error}", backend="postgres", retryable=False) from error

    async def _start(self) -> Any:
        async with self._starting:
            if self._pool is None:
                listener = await asyncpg.connect(self._dsn)
                async with listener.transaction():
                    await listener.execute(sql.SCHEMA)
                await listener.add_listener(sql.CHANNEL, self._on_notify)
                self._listener = listener
                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=1, max_size=10, reset=_keep_session
                )
        return self._pool


class _Joined(NamedTuple):
    """What `_enqueue` did.

    Attributes:
        token: The entry's token; 0 when nothing was queued.
        holds: Its hold count when the call (or the one it retries) added a hold, else 0.
        holding: Whether it holds the lock already (else the caller waits for its turn).

    """

    token: int
    holds: int
    holding: bool


class _Interest:
    """A wish to wake on a change of one lock.

    Until `watched` is set, any change wakes it (observers, and waiters before their first
    read); then only the departure of one of the `watched` sessions.
    """

    def __init__(self) -> None:
        self.watched: frozenset[str] | None = None
        self.woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake_for(self, session: str, *, left: bool) -> None:
        if self.watched is not None and not (left and session in self.watched):
            return
        if not self.woken.done():
            self.woken.set_result(None)


async def _keep_session(_conn: Any) -> None:
    """Return a connection to the pool as it is: no reset query, no round trip.

    Pooled connections never LISTEN, SET or take session-level advisory locks, so the default
    reset has nothing to undo; asyncpg still rolls back a transaction left open.
    """


def _entry(row: Any) -> QueuedEntry:
    return QueuedEntry(
        row["session_id"], LockMode(row["mode"]), int(row["token"]), int(row["permits"])
    )


def _state(name: str, rows: list[Any]) -> LockState:
    expires: dict[str, float | None] = {
        row["session_id"]: max(float(row["expires_in_s"]), 0.0) for row in rows
    }
    holds = {row["session_id"]: int(row["holds"]) for row in rows}
    values = {row["session_id"]: bytes(row["value"]) for row in rows}
    return LockQueue(_entry(row) for row in rows).state(name, expires, holds, values)
