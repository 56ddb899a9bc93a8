from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
from collections import defaultdict
from collections.abc import AsyncGenerator, Awaitable
from typing import Any, ClassVar, cast
from urllib.parse import quote, unquote

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tessera.core import FailedPreconditionError, NotFoundError, TesseraSettings
from tessera.core.plugins import LockGrant, LockMode, LockSession, LockState, ReleaseOutcome, Safety
from tessera.core.redis import ScriptRunner, connect_redis, redis_errors
from tessera.lock_backends import _redis_scripts as scripts
from tessera.lock_backends._queue import LockQueue, QueuedEntry
from tessera.lock_backends._redis_channels import ChannelListener, LockChannels

#: Every Redis key of the backend starts with this.
REDIS_PREFIX = "tessera:lock:"
# A waiter rechecks this long after its blocker's lease should have ended, so that the purge of
# the dead entry (by Redis's clock) has surely happened.
_EXPIRY_SLACK_S = 0.05
# The statuses ENQUEUE and CHECK answer (see `_redis_scripts`).
_WAITING, _GRANTED, _REENTERED, _REFUSED = 0, 1, 2, 3
_ALREADY_QUEUED, _CONFLICT, _NO_SESSION = -1, -2, -3
_GONE = -1


class RedisLockBackend:
    """Locks in Redis: fair and fenced, but safe only while Redis does not fail over.

    A session is a key with a TTL. Each lock is a sorted set of sessions scored by a token from
    `INCR` (the FIFO order and the fencing token), with every entry's lease deadline beside it;
    Lua scripts change one lock atomically and drop entries whose lease ran out; a dropped holder
    with a lock-delay holds the lock back until its lease deadline plus the delay. A script that
    removes entries publishes on the lock's channel who left and who holds the lock now; a waiter
    sleeps on that channel (one pubsub connection per backend, `LockChannels`) until a note says
    it holds the lock, or until the earliest lease deadline of the entries up to its own, never
    polling. Acquiring a free lock and releasing it take one round trip each.

    Safety: efficiency only. Redis replicates asynchronously: after a fail-over the new primary
    may have lost grants and token increments, so two holders, or a repeated token, are possible.
    Use it to avoid duplicate work, never where a double holder corrupts data.

    Concurrency: any number of tasks and processes on the same Redis.

    Args:
        settings: `redis_url` names the server.

    """

    safety: ClassVar[Safety] = Safety.EFFICIENCY_ONLY

    def __init__(self, settings: TesseraSettings) -> None:
        self._redis: Redis = connect_redis(settings)
        self._scripts = {
            name: self._redis.register_script(getattr(scripts, name))
            for name in (
                "ENQUEUE",
                "CHECK",
                "STATE",
                "RELEASE",
                "DEQUEUE",
                "EXTEND",
                "PROCLAIM",
                "REAP",
                "RENEW",
            )
        }
        self._runner = ScriptRunner(self._redis)
        self._channels = LockChannels(self._redis)

    async def open_session(self, ttl_s: float) -> LockSession:
        """Create the session key with a TTL; see `LockBackend.open_session`."""
        session_id = secrets.token_hex(8)
        ttl_ms = math.ceil(ttl_s) * 1000
        with redis_errors("open lock session"):
            await self._redis.set(_session_key(session_id), ttl_ms, px=ttl_ms)
        return LockSession(session_id, ttl_ms / 1000)

    async def keep_alive(self, session_id: str) -> float:
        """Renew the session and its queue entries; see `LockBackend.keep_alive`.

        Two round trips however many locks the session holds or waits for: one script renews
        the session's keys and names its locks, then one pipeline (no MULTI: each lock has its
        own hash tag) extends every entry; one round trip when the session is gone.
        """
        with redis_errors("renew lock session"):
            ttl_ms, *names = await self._runner.run(
                self._scripts["RENEW"],
                [_session_key(session_id), _session_locks_key(session_id)],
                [],
            )
            if not ttl_ms:
                return 0.0
            if names:
                await self._extend([name.decode() for name in names], session_id, int(ttl_ms))
        return int(ttl_ms) / 1000

    async def session_ttl(self, session_id: str) -> float:
        """Read the session key's TTL; see `LockBackend.session_ttl`."""
        with redis_errors("read lock session"):
            ttl_ms = await self._redis.pttl(_session_key(session_id))
        return max(int(ttl_ms), 0) / 1000

    async def close_session(self, session_id: str) -> None:
        """Leave every queue and delete the session; see `LockBackend.close_session`."""
        with redis_errors("close lock session"):
            for name in await self._locks_of(session_id):
                await self._dequeue(name.decode(), session_id, 0)
            await self._redis.delete(_session_key(session_id), _session_locks_key(session_id))

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
        """Queue the session by script and wait for its hand-off; see `LockBackend.acquire`.

        One round trip when the lock is free (or a try is refused). A waiter listens on the
        lock's channel through the backend's shared connection; when the channel was subscribed
        already (another waiter of this process), every note published after its entry was
        queued reaches it, else it subscribes and then reads its turn, so that no hand-off is
        missed. The note that grants it the lock is the last thing it waits for. Cancelled while
        the script runs, it waits for the script's answer (shielded) and leaves the queue.
        """
        encoded = quote(name, safe="")
        keys = _keys(encoded)
        entry = f"{_mode_text(mode, permits)}:{round(lock_delay_s * 1000)}:{request_id}"
        with (
            redis_errors("acquire lock"),
            self._channels.listening(_channel(encoded), session_id) as wait,
        ):
            enqueue = asyncio.ensure_future(
                self._runner.run(
                    self._scripts["ENQUEUE"],
                    [*keys, _session_key(session_id), _session_locks_key(session_id)],
                    [
                        session_id,
                        entry,
                        request_id,
                        int(reentrant),
                        value,
                        int(wait_s > 0),
                        encoded,
                    ],
                )
            )
            try:
                # Shielded: a caller cancelled while the script runs must still leave the queue.
                status, *rest = await asyncio.shield(enqueue)
            except asyncio.CancelledError:
                await asyncio.shield(self._withdraw(enqueue, encoded, session_id, request_id))
                raise
            if status == _NO_SESSION:
                raise NotFoundError(f"session {session_id!r} does not exist")
            if status == _ALREADY_QUEUED:
                raise FailedPreconditionError(
                    "the session already holds or waits for this lock; release it first"
                )
            if status == _CONFLICT:
                raise FailedPreconditionError(rest[0].decode())
            if status == _REFUSED:
                return None
            if status == _REENTERED:
                return LockGrant(name, session_id, mode, int(rest[0]), int(rest[1]))
            token = int(rest[0])
            granted = status == _GRANTED
            try:
                if not granted:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait_s):
                            granted = await self._await_turn(
                                encoded, session_id, wait, token, int(rest[1])
                            )
            finally:
                if not granted:
                    await asyncio.shield(self._dequeue(encoded, session_id, token))
        return LockGrant(name, session_id, mode, token) if granted else None

    async def release(self, name: str, session_id: str, token: int) -> ReleaseOutcome:
        """Release by script if the session holds this grant; see `LockBackend.release`.

        The script's answer names the entries it granted the lock to; those waiting in this
        process are woken at once (the message on the channel would tell them a little later).
        """
        encoded = quote(name, safe="")
        with redis_errors("release lock"):
            outcome, note = await self._run("RELEASE", encoded, session_id, token)
        self._hand_off(encoded, note)
        return ReleaseOutcome(outcome.decode())

    async def proclaim(self, name: str, session_id: str, token: int, value: bytes) -> bool:
        """Store the value of a holding grant by script; see `LockBackend.proclaim`."""
        with redis_errors("proclaim"):
            return bool(await self._run("PROCLAIM", quote(name, safe=""), session_id, token, value))

    async def observe(self, name: str) -> AsyncGenerator[LockState, None]:
        """Yield the lock's state, then again after each message on its channel.

        See `LockBackend.observe`. Subscribed (on the backend's shared connection) before the
        first read, so no change is missed; an entry whose lease ends is announced by the next
        script that drops it, so the observer also wakes at the earliest lease deadline of the
        queue and looks.
        """
        encoded = quote(name, safe="")
        with (
            redis_errors("observe lock"),
            self._channels.listening(_channel(encoded), None) as wake,
        ):
            while True:
                await wake.subscribed()
                state = await self.describe(name)
                yield state
                leases = [e.lease_expires_in_s or 0.0 for e in state.holders + state.waiters]
                loop = asyncio.get_running_loop()
                await wake.next(loop.time() + min(leases) + _EXPIRY_SLACK_S if leases else None)

    async def reap(self) -> int:
        """Drop the expired entries of every lock; see `LockBackend.reap`.

        Sessions and their lock sets are keys with a TTL, which Redis deletes itself.
        """
        reaped = 0
        with redis_errors("reap locks"):
            async for key in self._redis.scan_iter(match=f"{REDIS_PREFIX}queue:{{*", count=500):
                encoded = key.decode()[len(f"{REDIS_PREFIX}queue:{{") : -1]
                reaped += int(await self._run("REAP", encoded))
        return reaped

    async def describe(self, name: str) -> LockState:
        """Read one lock's queue and lease deadlines; see `LockBackend.describe`."""
        with redis_errors("describe lock"):
            return _state(name, await self._run("STATE", quote(name, safe="")))

    async def list_locks(self, prefix: str) -> list[LockState]:
        """Scan the queues under the prefix; see `LockBackend.list_locks`."""
        pattern = f"{REDIS_PREFIX}queue:{{{quote(prefix, safe='')}*"
        names: set[str] = set()
        with redis_errors("list locks"):
            async for key in self._redis.scan_iter(match=pattern, count=500):
                names.add(key.decode()[len(f"{REDIS_PREFIX}queue:{{") : -1])
            states = [
                _state(unquote(encoded), await self._run("STATE", encoded))
                for encoded in sorted(names, key=unquote)
            ]
        return [state for state in states if state.holders or state.waiters]

    async def close(self) -> None:
        """Close the Redis connections; sessions expire with their keys."""
        await self._channels.close()
        await self._redis.aclose()

    async def _await_turn(
        self, encoded: str, session_id: str, wait: ChannelListener, token: int, look_in_ms: int
    ) -> bool:
        """Wait until the entry `token` of `session_id` (`wait` listens for it) holds the lock.

        Returns True. `look_in_ms` is when to read the turn again unless told earlier (ENQUEUE's
        or CHECK's answer). Raises NotFoundError when the entry left the queue (its session
        ended).
        """
        loop = asyncio.get_running_loop()
        look = not wait.covered
        deadline = loop.time() + look_in_ms / 1000 + _EXPIRY_SLACK_S
        while True:
            if look:
                await wait.subscribed()
                status, *rest = await self._run("CHECK", encoded, session_id, token)
                if status == _GONE:
                    raise NotFoundError(f"session {session_id!r} ended while waiting")
                if status == _GRANTED:
                    return True
                deadline = loop.time() + int(rest[1]) / 1000 + _EXPIRY_SLACK_S
            handoff = await wait.next(deadline)
            look = handoff is None
            if handoff is None or handoff.token != token:
                continue  # looking again, or a note about an earlier entry of the session
            if not handoff.granted:
                raise NotFoundError(f"session {session_id!r} ended while waiting")
            if handoff.delay_s <= 0:
                return True
            # A lock-delay holds the lock back: nothing to be told, only time to let pass.
            deadline = loop.time() + handoff.delay_s + _EXPIRY_SLACK_S

    async def _withdraw(
        self, enqueue: Awaitable[Any], encoded: str, session_id: str, request_id: str
    ) -> None:
        """Undo what an abandoned ENQUEUE did: leave the queue, or give back a reentrant hold."""
        with contextlib.suppress(RedisError):  # then the entry ends with its session's lease
            status, *rest = await enqueue
            if status in (_GRANTED, _WAITING):
                await self._dequeue(encoded, session_id, int(rest[0]))
            elif status == _REENTERED:
                # Nobody got the hold the script added: the holder would have to release once
                # more than it acquired. Its request id goes too, so that a retry holds again.
                _, note = await self._run("RELEASE", encoded, session_id, int(rest[0]), request_id)
                self._hand_off(encoded, note)

    async def _dequeue(self, encoded: str, session_id: str, token: int) -> None:
        """Take the session's entry (with `token`; 0: any) out of the lock's queue."""
        _, note = await self._run("DEQUEUE", encoded, session_id, token)
        self._hand_off(encoded, note)

    async def _extend(self, encoded_names: list[str], session_id: str, ttl_ms: int) -> None:
        """Move the session's entry deadline in each lock named, in one pipelined round trip.

        Extending is idempotent: after a NOSCRIPT reply or a retry, an entry may be extended
        again.
        """
        extend = self._scripts["EXTEND"]
        await self._runner.run_all(
            [(extend, _keys(encoded), [session_id, ttl_ms]) for encoded in encoded_names]
        )

    def _hand_off(self, encoded: str, note: bytes) -> None:
        # The next holder may wait in this process: the reply tells it sooner than the message.
        self._channels.deliver(_channel(encoded), note)

    async def _locks_of(self, session_id: str) -> set[bytes]:
        # redis-py types its commands for both the sync and the asyncio client.
        key = _session_locks_key(session_id)
        return await cast("Awaitable[set[bytes]]", self._redis.smembers(key))

    async def _run(self, script: str, encoded: str, *args: str | bytes | int) -> Any:
        return await self._runner.run(self._scripts[script], _keys(encoded), args)


def _keys(encoded: str) -> list[str]:
    tag = f"{{{encoded}}}"
    return [
        f"{REDIS_PREFIX}queue:{tag}",
        f"{REDIS_PREFIX}entries:{tag}",
        f"{REDIS_PREFIX}expiry:{tag}",
        f"{REDIS_PREFIX}token:{tag}",
        f"{REDIS_PREFIX}released:{tag}",
        f"{REDIS_PREFIX}delay:{tag}",
        f"{REDIS_PREFIX}holds:{tag}",
        f"{REDIS_PREFIX}values:{tag}",
    ]


def _channel(encoded: str) -> bytes:
    return _keys(encoded)[4].encode()


def _session_key(session_id: str) -> str:
    return f"{REDIS_PREFIX}session:{{{session_id}}}"


def _session_locks_key(session_id: str) -> str:
    return f"{REDIS_PREFIX}session-locks:{{{session_id}}}"


def _state(name: str, reply: list[Any]) -> LockState:
    """Build a lock's state from the STATE script's reply."""
    now_ms = int(reply[0])
    entries: list[QueuedEntry] = []
    expires: dict[str, float | None] = defaultdict(lambda: None)
    holds: dict[str, int] = {}
    values: dict[str, bytes] = {}
    for index in range(2, len(reply), 6):
        session = reply[index].decode()
        mode, permits = _parse_mode(reply[index + 2].decode().split(":", 1)[0])
        entries.append(QueuedEntry(session, mode, int(reply[index + 1]), permits))
        expires[session] = max(int(reply[index + 3]) - now_ms, 0) / 1000
        holds[session] = int(reply[index + 4])
        values[session] = reply[index + 5]
    return LockQueue(entries).state(name, expires, holds, values)


def _mode_text(mode: LockMode, permits: int) -> str:
    """Return how an entry stores its mode: "exclusive", "shared" or "permit/<permits>"."""
    return f"{mode.value}/{permits}" if mode is LockMode.PERMIT else mode.value


def _parse_mode(text: str) -> tuple[LockMode, int]:
    """Return the mode and permits stored by `_mode_text`."""
    mode, _, permits = text.partition("/")
    return LockMode(mode), int(permits or 0)
