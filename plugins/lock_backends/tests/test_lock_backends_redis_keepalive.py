"""The Redis backend's keep-alive: a bounded number of round trips however many locks a session has.

Watched from a private server, where the backend is the only other client: MONITOR names the
commands it sent (the scripts' own calls left out), and the server's count of the reads it
processed (`total_reads_processed`: one per request a client wrote, a pipeline being one
request) gives the round trips.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TypeVar

import pytest_asyncio
from redis.asyncio import Redis

from tessera.core import TesseraSettings
from tessera.core.embedded import RedisServer
from tessera.core.plugins import LockGrant, LockMode
from tessera.core.redis import connect_redis
from tessera.lock_backends import RedisLockBackend
from tessera.lock_backends import _redis_scripts as scripts
from tessera.lock_backends._redis import _session_key
from tessera.testing import ServerFactory

_SCRIPT_NAMES = {
    hashlib.sha1(getattr(scripts, name).encode()).hexdigest(): name for name in ("RENEW", "EXTEND")
}
_TTL_S = 3.0  # the renewed session's: long enough for a slow run, short enough to see it renewed
_OTHER_TTL_S = 30.0  # the other holder's: no lease of it ends during a test

T = TypeVar("T")


@dataclass
class Watched:
    """What one call sent a server: its commands in order, and its round trips."""

    commands: list[str]
    round_trips: int


@dataclass
class KeptSession:
    """A session holding three locks and waiting for two that another session holds."""

    backend: RedisLockBackend
    session_id: str
    names: list[str]
    waits: list[asyncio.Task[LockGrant | None]]

    async def leases(self) -> list[float]:
        """The seconds each of the session's entries has left, by lock, as `describe` says."""
        leases = []
        for name in self.names:
            state = await self.backend.describe(name)
            [entry] = [e for e in state.holders + state.waiters if e.session_id == self.session_id]
            assert entry.lease_expires_in_s is not None
            leases.append(entry.lease_expires_in_s)
        return leases


@pytest_asyncio.fixture
async def server(redis_factory: ServerFactory[RedisServer]) -> RedisServer:
    return redis_factory()


@pytest_asyncio.fixture
async def redis(server: RedisServer) -> AsyncIterator[Redis]:
    # Long reply timeout: the monitor connection idles while the watched call runs.
    client = connect_redis(server.url, timeout_s=60)
    # Loaded beforehand, as a running backend has them: no first call is answered NOSCRIPT.
    for name in _SCRIPT_NAMES.values():
        await client.script_load(getattr(scripts, name))
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def kept(server: RedisServer) -> AsyncIterator[KeptSession]:
    backend = RedisLockBackend(TesseraSettings(redis_url=server.url))
    session = await backend.open_session(_TTL_S)
    other = await backend.open_session(_OTHER_TTL_S)
    names = [f"kept-{index}-{uuid.uuid4().hex}" for index in range(5)]
    for name in names[:3]:
        assert await backend.acquire(name, session.id, LockMode.EXCLUSIVE, wait_s=0)
    for name in names[3:]:
        assert await backend.acquire(name, other.id, LockMode.EXCLUSIVE, wait_s=0)
    waits = [
        asyncio.create_task(backend.acquire(name, session.id, LockMode.EXCLUSIVE, wait_s=20))
        for name in names[3:]
    ]
    async with asyncio.timeout(5):
        for name in names[3:]:
            # Polls on purpose: waits, from outside, for the waiting entries.
            while not (await backend.describe(name)).waiters:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    yield KeptSession(backend, session.id, names, waits)
    for wait in waits:
        wait.cancel()
    await asyncio.gather(*waits, return_exceptions=True)
    await backend.close()


async def _watch(redis: Redis, call: Awaitable[T]) -> tuple[T, Watched]:
    """Await `call`; return its result and what it sent, read from the server.

    What clients sent between two INFO requests of `redis` is what the call sent: nothing else
    talks to the private server meanwhile (the backend's channel connection only listens).
    """
    async with redis.monitor() as monitor:
        reads_before = await _reads(redis)
        result = await call
        # This INFO's own request is one more read.
        round_trips = await _reads(redis) - reads_before - 1
        commands: list[str] = []
        infos = 0
        while infos < 2:
            info = await monitor.next_command()
            words = info["command"].split()
            if words[0] == "INFO":
                infos += 1
            elif infos == 1 and info["client_type"] != "lua":
                name = _SCRIPT_NAMES.get(words[1]) if words[0] == "EVALSHA" else None
                commands.append(name or words[0])
    return result, Watched(commands, round_trips)


async def _reads(redis: Redis) -> int:
    return int((await redis.info("stats"))["total_reads_processed"])


async def test_redis_keep_alive_of_a_session_with_five_locks_takes_two_round_trips(
    kept: KeptSession, redis: Redis
) -> None:
    await asyncio.sleep(0.5)  # lets the leases run down, so that their renewal shows
    before = await kept.leases()
    ttl_s, watched = await _watch(redis, kept.backend.keep_alive(kept.session_id))
    assert ttl_s == _TTL_S
    # Before: GET, PEXPIRE, PEXPIRE, SMEMBERS, then one EXTEND per lock, each a round trip.
    assert watched.commands == ["RENEW"] + ["EXTEND"] * 5
    assert watched.round_trips == 2
    after = await kept.leases()
    for lease_before, lease_after in zip(before, after, strict=True):
        assert lease_after > lease_before + 0.25
    assert await kept.backend.session_ttl(kept.session_id) > _TTL_S - 0.5
    # The waits go on.
    assert not any(wait.done() for wait in kept.waits)


async def test_redis_keep_alive_of_a_gone_session_answers_zero_and_extends_nothing(
    kept: KeptSession, redis: Redis
) -> None:
    # The session key ends as if its TTL ran out; its entries are still queued until purged.
    await redis.delete(_session_key(kept.session_id))
    before = await kept.leases()
    ttl_s, watched = await _watch(redis, kept.backend.keep_alive(kept.session_id))
    assert ttl_s == 0.0
    assert watched.commands == ["RENEW"]
    assert watched.round_trips == 1
    after = await kept.leases()
    for lease_before, lease_after in zip(before, after, strict=True):
        assert lease_after <= lease_before


async def test_redis_keep_alive_extends_the_entries_after_the_scripts_were_flushed(
    kept: KeptSession, redis: Redis
) -> None:
    # As after a restart of Redis: EVALSHA answers NOSCRIPT until the script is loaded again.
    await asyncio.sleep(0.5)
    before = await kept.leases()
    await redis.script_flush()
    assert await kept.backend.keep_alive(kept.session_id) == _TTL_S
    after = await kept.leases()
    for lease_before, lease_after in zip(before, after, strict=True):
        assert lease_after > lease_before + 0.25
