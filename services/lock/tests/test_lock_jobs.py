"""The lock service's background jobs: directly, and through a real Celery worker subprocess."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from tessera.core.embedded import EtcdServer, RedisServer
from tessera.core.etcd import EtcdClient
from tessera.core.jobs import WorkerSettings, create_celery_app
from tessera.core.plugins import LockMode
from tessera.core.redis import connect_redis
from tessera.lock import LockSettings
from tessera.lock.jobs import STATS_KEY, reap_once, stats_once
from tessera.lock_backends import EtcdLockBackend
from tessera.testing import JobsProcess, ServerFactory

DELAYS_PREFIX = "/tessera/lock/delays/"


@pytest.fixture
def private_etcd(etcd_factory: ServerFactory[EtcdServer]) -> EtcdServer:
    """An etcd of this test only, so that the statistics count only its locks."""
    return etcd_factory()


@pytest.fixture
def job_settings(private_etcd: EtcdServer, redis_server: RedisServer) -> LockSettings:
    return LockSettings(
        port=0,
        metrics_port=None,
        etcd_endpoints=[private_etcd.endpoint],
        redis_url=redis_server.url,
    )


@pytest_asyncio.fixture
async def backend(job_settings: LockSettings) -> AsyncIterator[EtcdLockBackend]:
    backend = EtcdLockBackend(job_settings)
    yield backend
    await backend.close()


@pytest_asyncio.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = connect_redis(redis_server.url)
    yield client
    await client.aclose()


async def _until(condition: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        # The conditions read servers; there is no event to wait on.
        while not await condition():  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def _expired_holder_with_lock_delay(backend: EtcdLockBackend, name: str) -> None:
    """Leave an etcd lock-delay guard behind: its holder's session expires (TTL 2 s)."""
    stale = await backend.open_session(2)
    grant = await backend.acquire(name, stale.id, LockMode.EXCLUSIVE, wait_s=0, lock_delay_s=0.5)
    assert grant is not None
    await _until(lambda: _freed(backend, name), 10)


async def _freed(backend: EtcdLockBackend, name: str) -> bool:
    # etcd deleted the expired lease's keys; only the lock-delay guard is left.
    return not (await backend.describe(name)).holders


async def test_lock_reap_once_ends_lock_delays_nobody_looked_at(
    backend: EtcdLockBackend, job_settings: LockSettings
) -> None:
    name = f"reap/{uuid.uuid4().hex}"
    await _expired_holder_with_lock_delay(backend, name)
    async with EtcdClient.from_settings(job_settings) as etcd:
        assert len((await etcd.get_prefix(DELAYS_PREFIX)).items) == 1

        async def delay_started() -> bool:
            # The first run after etcd deleted the entry starts the delay (nobody else noticed
            # the expiry); it deletes nothing yet.
            assert await reap_once(job_settings) == {"reaped": 0}
            [guard] = (await etcd.get_prefix(DELAYS_PREFIX)).items
            return "seen_at" in json.loads(guard.value)

        await _until(delay_started, 10)
        await asyncio.sleep(0.6)
        assert await reap_once(job_settings) == {"reaped": 1}
        assert not (await etcd.get_prefix(DELAYS_PREFIX)).items


async def test_lock_stats_once_counts_locks_semaphores_and_waiters(
    backend: EtcdLockBackend, job_settings: LockSettings, redis: Redis
) -> None:
    holder, waiter = await backend.open_session(10), await backend.open_session(10)
    try:
        await backend.acquire("stats/lock", holder.id, LockMode.EXCLUSIVE, wait_s=0)
        waiting = asyncio.ensure_future(
            backend.acquire("stats/lock", waiter.id, LockMode.EXCLUSIVE, wait_s=10)
        )
        await backend.acquire("stats/pool", holder.id, LockMode.PERMIT, wait_s=0, permits=3)
        await backend.acquire("stats/pool", waiter.id, LockMode.PERMIT, wait_s=0, permits=3)
        await _until(lambda: _has_waiter(backend, "stats/lock"), 10)
        assert await stats_once(job_settings) == {"locks": 2, "holders": 3, "waiters": 1}
        document = json.loads(await redis.get(STATS_KEY) or "{}")
        assert {key: document[key] for key in ("backend", "locks", "semaphores")} == {
            "backend": "etcd",
            "locks": 1,
            "semaphores": 1,
        }
        assert document["longest_queue"] == {"name": "stats/lock", "waiters": 1}
        assert await redis.ttl(STATS_KEY) > 0
        waiting.cancel()
    finally:
        await backend.close_session(holder.id)
        await backend.close_session(waiter.id)


async def _has_waiter(backend: EtcdLockBackend, name: str) -> bool:
    return len((await backend.describe(name)).waiters) == 1


@pytest.fixture
def worker(job_settings: LockSettings, jobs_process: Callable[..., JobsProcess]) -> JobsProcess:
    """A real worker serving queue `lock`, as `tessera dev up` runs it."""
    env = {
        "TESSERA_REDIS_URL": job_settings.redis_url,
        "TESSERA_ETCD_ENDPOINTS": ",".join(job_settings.etcd_endpoints),
    }
    return jobs_process("worker", "-Q", "lock", "-c", "1", env=env)


async def test_lock_jobs_run_on_a_real_worker(
    worker: JobsProcess, backend: EtcdLockBackend, job_settings: LockSettings, redis: Redis
) -> None:
    await redis.delete(STATS_KEY)
    await _expired_holder_with_lock_delay(backend, f"worker/{uuid.uuid4().hex}")
    app = create_celery_app(WorkerSettings(redis_url=job_settings.redis_url), queues=())

    async def run(task: str) -> dict[str, int]:
        counts = await asyncio.to_thread(app.send_task(task).get, timeout=60)
        assert isinstance(counts, dict)
        return counts

    assert await run("tessera.lock.stats") == {"locks": 0, "holders": 0, "waiters": 0}
    assert json.loads(await redis.get(STATS_KEY) or "{}")["backend"] == "etcd"
    reaped = 0
    async with asyncio.timeout(30):
        while reaped == 0:
            reaped += (await run("tessera.lock.reap"))["reaped"]
            await asyncio.sleep(0.3)
    assert reaped == 1
