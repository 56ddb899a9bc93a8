"""The Redis backend's round trips and hand-offs, watched from the server with MONITOR.

The conformance kit (test_lock_backends_redis.py) says the backend is correct; these say it is
quick the way it was made to be: one script per acquisition of a free lock and one per release,
a waiter handed the lock by the release's note without reading it again, one shared pubsub
connection per backend, no hand-off missed when that connection is lost, and no entry left
behind by an acquisition cancelled while its script runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest_asyncio
from redis.asyncio import Redis

from tessera.core import TesseraSettings
from tessera.core.embedded import RedisServer
from tessera.core.plugins import LockGrant, LockMode, ReleaseOutcome
from tessera.core.redis import connect_redis
from tessera.lock_backends import RedisLockBackend
from tessera.lock_backends import _redis_scripts as scripts
from tessera.lock_backends._redis_channels import Handoff, read_note
from tessera.testing import (
    ACQUIRE,
    OK,
    RELEASE,
    History,
    ServerFactory,
    cancel_while_frozen,
    check_exclusive_holds,
    check_fencing_tokens,
)

_SCRIPT_NAMES = {
    hashlib.sha1(getattr(scripts, name).encode()).hexdigest(): name
    for name in ("ENQUEUE", "CHECK", "STATE", "RELEASE", "DEQUEUE", "EXTEND", "PROCLAIM", "REAP")
}
_TTL_S = 30.0  # far longer than any test: no lease deadline wakes a waiter here


class CommandLog:
    """What clients send the server about one lock, as MONITOR shows it (scripts' calls left out).

    Each command is named by its script ("ENQUEUE", "RELEASE", ...) or its own name
    ("SUBSCRIBE"); only commands that mention `lock` (an unquoted name) are kept.
    """

    def __init__(self, redis: Redis, lock: str) -> None:
        self._redis = redis
        self._lock = lock
        self._seen: list[str] = []
        self._markers: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        monitor: Any = self._redis.monitor()  # redis-py leaves Monitor unannotated
        await monitor.__aenter__()  # sends MONITOR; the connection closes with the client
        self._task = asyncio.create_task(self._read(monitor))

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _read(self, monitor: Any) -> None:
        while True:
            info = await monitor.next_command()
            words = info["command"].split()
            if info["client_type"] == "lua" or not words:
                continue
            if words[0] == "ECHO":
                self._markers.add(words[1])
            elif self._lock in info["command"]:
                name = words[0]
                self._seen.append(_SCRIPT_NAMES.get(words[1], name) if name == "EVALSHA" else name)

    async def take(self) -> list[str]:
        """Return the commands seen since the last `take`, once everything sent so far is seen."""
        marker = uuid.uuid4().hex
        await self._redis.echo(marker)
        await self.until(lambda _: marker in self._markers)
        seen, self._seen = self._seen, []
        return [name for name in seen if name != "STATE"]  # the tests' own `describe`

    async def until(self, predicate: Callable[[list[str]], bool]) -> None:
        async with asyncio.timeout(5):
            # Polls on purpose: the log fills from MONITOR, outside the backend.
            while not predicate(self._seen):  # noqa: ASYNC110
                await asyncio.sleep(0.005)


@pytest_asyncio.fixture
async def backend(redis_server: RedisServer) -> AsyncIterator[RedisLockBackend]:
    backend = RedisLockBackend(TesseraSettings(redis_url=redis_server.url))
    yield backend
    await backend.close()


@pytest_asyncio.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    # Long reply timeout: the monitor connection idles between tests' commands.
    client = connect_redis(redis_server.url, timeout_s=60)
    # Loaded beforehand, so that no first call is answered NOSCRIPT and sent again.
    for name in _SCRIPT_NAMES.values():
        await client.script_load(getattr(scripts, name))
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def lock_name() -> str:
    return f"handoff-{uuid.uuid4().hex}"


@pytest_asyncio.fixture
async def log(redis: Redis, lock_name: str) -> AsyncIterator[CommandLog]:
    log = CommandLog(redis, lock_name)
    await log.start()
    yield log
    await log.stop()


async def _waiters(backend: RedisLockBackend, name: str, count: int) -> None:
    async with asyncio.timeout(5):
        # Polls on purpose: waits, from outside, for the waiters' entries.
        while len((await backend.describe(name)).waiters) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def _subscribers(redis: Redis, channel: str) -> int:
    counts = dict(await redis.pubsub_numsub(channel))
    return int(counts[channel.encode()])


def _channel(name: str) -> str:
    return f"tessera:lock:released:{{{name}}}"


async def test_redis_free_lock_takes_one_script_to_acquire_and_one_to_release(
    backend: RedisLockBackend, log: CommandLog, lock_name: str
) -> None:
    session = await backend.open_session(_TTL_S)
    await log.take()
    grant = await backend.acquire(lock_name, session.id, LockMode.EXCLUSIVE, wait_s=10)
    assert grant is not None
    assert await log.take() == ["ENQUEUE"]
    assert await backend.release(lock_name, session.id, grant.token) is ReleaseOutcome.RELEASED
    assert await log.take() == ["RELEASE"]
    # A refused try leaves nothing to clean up: still one script.
    other = await backend.open_session(_TTL_S)
    held = await backend.acquire(lock_name, session.id, LockMode.EXCLUSIVE, wait_s=0)
    assert held is not None
    await log.take()
    assert await backend.acquire(lock_name, other.id, LockMode.EXCLUSIVE, wait_s=0) is None
    assert await log.take() == ["ENQUEUE"]
    assert (await backend.describe(lock_name)).waiters == ()


@pytest_asyncio.fixture
async def elsewhere(redis_server: RedisServer) -> AsyncIterator[RedisLockBackend]:
    """Another process's backend: its releases reach `backend`'s waiters by the channel alone."""
    backend = RedisLockBackend(TesseraSettings(redis_url=redis_server.url))
    yield backend
    await backend.close()


async def test_redis_waiter_is_handed_the_lock_by_the_release_alone(
    backend: RedisLockBackend, elsewhere: RedisLockBackend, log: CommandLog, lock_name: str
) -> None:
    holder = await elsewhere.open_session(_TTL_S)
    first, second = [await backend.open_session(_TTL_S) for _ in range(2)]
    grant = await elsewhere.acquire(lock_name, holder.id, LockMode.EXCLUSIVE, wait_s=0)
    assert grant is not None
    await log.take()

    def waiting(session: str) -> asyncio.Task[LockGrant | None]:
        return asyncio.create_task(
            backend.acquire(lock_name, session, LockMode.EXCLUSIVE, wait_s=10)
        )

    first_wait = waiting(first.id)
    # The first waiter of this process subscribes, then reads its turn: no release is missed.
    await log.until(lambda seen: "CHECK" in seen)
    assert await log.take() == ["ENQUEUE", "SUBSCRIBE", "CHECK"]
    second_wait = waiting(second.id)
    await _waiters(backend, lock_name, 2)
    # The channel was subscribed already: the second waiter hears every later note.
    assert await log.take() == ["ENQUEUE"]
    # Released elsewhere: the note on the channel grants the first waiter.
    await elsewhere.release(lock_name, holder.id, grant.token)
    first_grant = await first_wait
    assert first_grant is not None
    assert first_grant.token > grant.token
    assert await log.take() == ["RELEASE"]
    # Released here: the release's own answer grants the second waiter.
    await backend.release(lock_name, first.id, first_grant.token)
    second_grant = await second_wait
    assert second_grant is not None
    assert second_grant.token > first_grant.token
    # The last waiter leaves the channel.
    await log.until(lambda seen: "UNSUBSCRIBE" in seen)
    assert await log.take() == ["RELEASE", "UNSUBSCRIBE"]


async def test_redis_waiters_of_many_locks_share_one_pubsub_connection(
    backend: RedisLockBackend, redis: Redis
) -> None:
    names = [f"shared-{uuid.uuid4().hex}" for _ in range(3)]
    holders = [await backend.open_session(_TTL_S) for _ in names]
    grants = [
        await backend.acquire(name, holder.id, LockMode.EXCLUSIVE, wait_s=0)
        for name, holder in zip(names, holders, strict=True)
    ]
    waiters = [await backend.open_session(_TTL_S) for _ in range(6)]
    subscribed_before = {c["id"] for c in await redis.client_list() if int(c["sub"]) > 0}
    waits = [
        asyncio.create_task(
            backend.acquire(names[index % 3], session.id, LockMode.EXCLUSIVE, wait_s=10)
        )
        for index, session in enumerate(waiters)
    ]
    for name in names:
        await _waiters(backend, name, 2)
    async with asyncio.timeout(5):
        # Polls on purpose: subscriptions are confirmed asynchronously.
        while [await _subscribers(redis, _channel(name)) for name in names] != [1, 1, 1]:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    subscribed = [
        int(c["sub"])
        for c in await redis.client_list()
        if int(c["sub"]) > 0 and c["id"] not in subscribed_before
    ]
    assert subscribed == [3], "one connection subscribed to the three locks' channels"
    for name, holder, grant in zip(names, holders, grants, strict=True):
        assert grant is not None
        await backend.release(name, holder.id, grant.token)
    async with asyncio.timeout(5):
        for index, wait in enumerate(waits):
            held = await wait
            assert held is not None
            await backend.release(names[index % 3], waiters[index].id, held.token)
        # Polls on purpose: unsubscriptions are confirmed asynchronously.
        while [await _subscribers(redis, _channel(name)) for name in names] != [0, 0, 0]:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_redis_waiter_gets_the_lock_when_its_pubsub_connection_was_killed(
    backend: RedisLockBackend, elsewhere: RedisLockBackend, redis: Redis, lock_name: str
) -> None:
    holder, waiter = await elsewhere.open_session(_TTL_S), await backend.open_session(_TTL_S)
    for round_ in range(2):  # released once after the reconnection, once while it is under way
        grant = await elsewhere.acquire(lock_name, holder.id, LockMode.EXCLUSIVE, wait_s=0)
        assert grant is not None
        before = {c["id"] for c in await redis.client_list() if int(c["sub"]) > 0}
        wait = asyncio.create_task(
            backend.acquire(lock_name, waiter.id, LockMode.EXCLUSIVE, wait_s=20)
        )
        await _waiters(backend, lock_name, 1)
        async with asyncio.timeout(5):
            # Polls on purpose: the subscription is confirmed asynchronously.
            while await _subscribers(redis, _channel(lock_name)) != 1:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        ours = [c["id"] for c in await redis.client_list() if int(c["sub"]) > 0]
        for client_id in set(ours) - before:
            await redis.client_kill_filter(_id=client_id)
        if round_ == 0:
            async with asyncio.timeout(5):
                # Polls on purpose: waits for the backend to subscribe again.
                while await _subscribers(redis, _channel(lock_name)) != 1:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
        await elsewhere.release(lock_name, holder.id, grant.token)
        # Well before the holder's lease deadline (30 s), which would wake the waiter anyway.
        async with asyncio.timeout(5):
            held = await wait
        assert held is not None
        assert held.token > grant.token
        await backend.release(lock_name, waiter.id, held.token)


async def test_redis_waiters_churning_over_locks_keep_exclusion_and_tokens(
    backend: RedisLockBackend,
) -> None:
    # Subscriptions come and go as locks gain and lose waiters: no hand-off may be missed.
    names = [f"churn-{uuid.uuid4().hex}" for _ in range(3)]
    history = History()
    rng = random.Random(4)

    async def worker(index: int) -> None:
        session = await backend.open_session(_TTL_S)
        for _ in range(12):
            name = rng.choice(names)
            invocation = history.invoke(f"client-{index}", ACQUIRE, key=name)
            grant = await backend.acquire(name, session.id, LockMode.EXCLUSIVE, wait_s=10)
            assert grant is not None
            invocation.complete(OK, token=grant.token)
            await asyncio.sleep(rng.choice((0, 0.001, 0.003)))
            invocation = history.invoke(f"client-{index}", RELEASE, key=name)
            outcome = await backend.release(name, session.id, grant.token)
            invocation.complete(OK if outcome is ReleaseOutcome.RELEASED else outcome.value)
        await backend.close_session(session.id)

    async with asyncio.timeout(30):
        await asyncio.gather(*(worker(index) for index in range(6)))
    assert len(history) == 6 * 12 * 2
    assert all(operation.succeeded for operation in history)
    assert check_exclusive_holds(history) == []
    assert check_fencing_tokens(history) == []


async def test_redis_acquisition_cancelled_while_its_script_runs_leaves_the_queue(
    redis_factory: ServerFactory[RedisServer],
) -> None:
    # A private server, frozen so that the script is sent but not answered before the cancel.
    server = redis_factory()
    backend = RedisLockBackend(TesseraSettings(redis_url=server.url))
    try:
        holder, waiter = await backend.open_session(_TTL_S), await backend.open_session(_TTL_S)
        grant = await backend.acquire("cancelled", holder.id, LockMode.EXCLUSIVE, wait_s=0)
        assert grant is not None
        for held in (True, False):  # queued as a waiter; granted at once
            if not held:
                await backend.release("cancelled", holder.id, grant.token)
            await cancel_while_frozen(
                server, backend.acquire("cancelled", waiter.id, LockMode.EXCLUSIVE, wait_s=10)
            )
            state = await backend.describe("cancelled")
            assert state.waiters == ()
            assert [entry.session_id for entry in state.holders] == ([holder.id] if held else [])
    finally:
        await backend.close()


def test_redis_handoff_note_is_read_by_session() -> None:
    note = b'{"l":[["a","3"]],"g":[["b","4"],["c","5"]],"d":250}'
    assert read_note(note) == {
        "a": Handoff(3, granted=False, delay_s=0.25),
        "b": Handoff(4, granted=True, delay_s=0.25),
        "c": Handoff(5, granted=True, delay_s=0.25),
    }
    # cjson writes an empty list as {}; "+s" and "=s" are for observers; anything else is noise.
    assert read_note(b'{"l":[["a","3"]],"g":{},"d":0}') == {"a": Handoff(3, False, 0.0)}
    assert read_note(b"+session") == {}
    assert read_note(b"{not json") == {}
    assert read_note(b'{"g": 5}') == {}
