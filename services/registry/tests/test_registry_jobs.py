"""The leader election and the background jobs, run by a real Celery worker subprocess."""

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from tessera.client.registry import RegistryClient
from tessera.core.embedded import EtcdServer, RedisServer
from tessera.core.etcd import EtcdClient
from tessera.core.redis import connect_redis
from tessera.proto.registry.v1 import registry_pb2
from tessera.registry import LEADER, RegistryService, RegistrySettings
from tessera.registry._keys import ServiceName, instance_key
from tessera.registry._probes import STREAK_PREFIX
from tessera.registry.jobs import STATS_KEY, reap_once, stats_once
from tessera.testing import JobsProcess

from .conftest import StartReplica, instance

# Jobs every half second, elections every 0.2 s: the test takes seconds, not minutes.
JOB_TIMERS = {
    "run_jobs": True,
    "election_interval_s": 0.2,
    "probe_interval_s": 0.5,
    "reap_interval_s": 0.5,
    "stats_interval_s": 0.5,
}
WORKER_READY_S = 60.0
SETTLE_S = 30.0


@pytest.fixture
def worker(
    etcd_server: EtcdServer, redis_server: RedisServer, jobs_process: Callable[..., JobsProcess]
) -> JobsProcess:
    """A real worker serving queue `registry`, as `tessera dev up` runs it."""
    env = {"TESSERA_REDIS_URL": redis_server.url, "TESSERA_ETCD_ENDPOINTS": etcd_server.endpoint}
    return jobs_process("worker", "-Q", "registry", "-c", "1", env=env)


@pytest_asyncio.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = connect_redis(redis_server.url)
    yield client
    await client.aclose()


async def _instances(client: RegistryClient, namespace: str) -> list[registry_pb2.Instance]:
    return list((await client.list(namespace, "probed")).service.instances)


async def _until(condition: Callable[[], Awaitable[bool]], timeout_s: float = SETTLE_S) -> None:
    async with asyncio.timeout(timeout_s):
        # The conditions poll servers; there is no event to wait on.
        while not await condition():  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def test_registry_leader_runs_probes_reaper_and_stats_through_a_real_worker(
    start_replica: StartReplica,
    worker: JobsProcess,
    redis: Redis,
    redis_server: RedisServer,
    etcd_server: EtcdServer,
    namespace: str,
) -> None:
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    spec = registry_pb2.HealthCheckSpec(
        kind="tcp", timeout_s=1, successes_before_passing=2, failures_before_critical=2
    )
    timers = {**JOB_TIMERS, "redis_url": redis_server.url}
    async with (
        start_replica(**timers) as first,
        start_replica(**timers) as second,
        RegistryClient([first.address, second.address]) as client,
        EtcdClient([etcd_server.endpoint]) as etcd,
    ):
        replicas = [first.service, second.service]

        async def one_leader() -> bool:
            terms = [r.leadership.term for r in replicas if r.leadership is not None]
            return sum(term is not None for term in terms) == 1

        await _until(one_leader, 10)
        [leader] = [r for r in replicas if r.leadership and r.leadership.term is not None]

        # Active health checks: a new check starts critical and passes after two probes.
        await client.register(
            instance(namespace, "probed", id="p1", host="127.0.0.1", port=port, health_check=spec)
        )

        async def healthy(want: bool) -> bool:
            return [i.healthy for i in await _instances(client, namespace)] == [want]

        await _until(lambda: healthy(True), WORKER_READY_S)
        # A leaseless ephemeral instance (it would never expire) and an orphan streak: reaped.
        orphan = instance(namespace, "orphan", id="o1", ephemeral=True)
        orphan_key = instance_key(ServiceName(namespace, "orphan"), "o1")
        await etcd.put(orphan_key, orphan.SerializeToString())
        await redis.set(f"{STREAK_PREFIX}{{{namespace}/gone/g1}}", 1)

        async def reaped() -> bool:
            streak = await redis.exists(f"{STREAK_PREFIX}{{{namespace}/gone/g1}}")
            return await etcd.get(orphan_key) is None and not streak

        await _until(reaped)

        async def counted() -> bool:
            raw = await redis.get(STATS_KEY)
            services = json.loads(raw)["services"] if raw else {}
            return services.get(f"{namespace}/probed") == {
                "instances": 1,
                "healthy": 1,
                "serving": 1,
                "ephemeral": 0,
                "persistent": 1,
            }

        await _until(counted)

        # The leader stops cleanly: it resigns and the other replica takes the jobs over,
        # which keep probing: the closed port turns the instance critical.
        old_term = leader.leadership.term if leader.leadership else None
        follower = second if leader is first.service else first
        await leader.__aexit__(None, None, None)
        listener.close()
        await listener.wait_closed()

        async def took_over() -> bool:
            term = follower.service.leadership.term if follower.service.leadership else None
            return term is not None and term != old_term

        await _until(took_over, 10)
        async with RegistryClient([follower.address]) as survivor:
            await _until(lambda: _unhealthy(survivor, namespace))
        # Persistent instances are never deleted by probing.
        async with RegistryClient([follower.address]) as survivor:
            assert len(await _instances(survivor, namespace)) == 1


async def _unhealthy(client: RegistryClient, namespace: str) -> bool:
    return [i.healthy for i in await _instances(client, namespace)] == [False]


async def test_registry_jobs_with_a_stale_term_do_nothing(
    etcd_server: EtcdServer, redis_server: RedisServer, redis: Redis
) -> None:
    settings = RegistrySettings(
        etcd_endpoints=[etcd_server.endpoint], redis_url=redis_server.url, port=0
    )
    async with EtcdClient([etcd_server.endpoint]) as etcd:
        leader = await etcd.get(LEADER)
    stale = 1 if leader is None else leader.create_revision - 1
    await redis.delete(STATS_KEY)
    assert await stats_once(settings, stale) == {"skipped": 1}
    assert await reap_once(settings, stale) == {"skipped": 1}
    assert await redis.get(STATS_KEY) is None


async def test_registry_replicas_without_jobs_do_not_campaign(
    etcd_server: EtcdServer,
) -> None:
    settings = RegistrySettings(etcd_endpoints=[etcd_server.endpoint], port=0, run_jobs=False)
    async with RegistryService(settings) as service:
        assert service.leadership is None
