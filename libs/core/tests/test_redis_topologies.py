"""Sentinel and Cluster URLs against real redis-server processes in sentinel and cluster mode."""

import asyncio
import time
import uuid

import kombu
import pytest
from celery.contrib.testing.worker import start_worker

from tessera.core import ConfigError
from tessera.core.embedded import RedisCluster, RedisSentinelGroup
from tessera.core.jobs import WorkerSettings, create_celery_app
from tessera.core.redis import (
    celery_broker,
    connect_redis,
    connect_redis_cluster,
    parse_redis_url,
)

INCREMENT_BOTH = "redis.call('INCR', KEYS[1]); return redis.call('INCRBY', KEYS[2], ARGV[1])"


def test_urls_name_their_topology() -> None:
    sentinel = parse_redis_url("redis+sentinel://u:p%40ss@s1:26380,s2/primary/2")
    assert (sentinel.kind, sentinel.master_name, sentinel.db) == ("sentinel", "primary", 2)
    assert sentinel.nodes == (("s1", 26380), ("s2", 26379))
    assert (sentinel.username, sentinel.password, sentinel.tls) == ("u", "p@ss", False)
    cluster = parse_redis_url("rediss+cluster://n1:7000,n2:7001")
    assert (cluster.kind, cluster.nodes, cluster.tls) == (
        "cluster",
        (("n1", 7000), ("n2", 7001)),
        True,
    )
    assert parse_redis_url("redis://127.0.0.1:6379/0").kind == "standalone"


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://s1:26379",  # no master name
        "redis+sentinel://s1:26379/primary/zero",
        "redis+cluster://n1:7000/3",  # a cluster has db 0 only
        "redis+cluster://n1:notaport",
        "redis+sentinel://:secret@/primary",  # no host
    ],
)
def test_malformed_topology_urls_are_config_errors_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_redis_url(url)
    assert "secret" not in str(raised.value)


def test_connect_redis_refuses_a_cluster_url_and_the_cluster_client_a_plain_one() -> None:
    with pytest.raises(ConfigError, match="connect_redis_cluster"):
        connect_redis("redis+cluster://127.0.0.1:7000")
    with pytest.raises(ConfigError, match=r"redis\+cluster://"):
        connect_redis_cluster("redis://127.0.0.1:6379/0")


def test_celery_broker_for_sentinel_and_refusal_for_cluster() -> None:
    broker = celery_broker("redis+sentinel://:pw@s1:26379,s2:26380/primary/1")
    assert broker.url == "sentinel://:pw@s1:26379/1;sentinel://:pw@s2:26380/1"
    assert broker.transport_options == {"master_name": "primary"}
    assert celery_broker("redis://r:6379/0").url == "redis://r:6379/0"
    with pytest.raises(ConfigError, match="Celery"):
        celery_broker("redis+cluster://n1:7000")


async def test_sentinel_client_follows_a_failover_to_the_promoted_replica(
    redis_sentinel: RedisSentinelGroup,
) -> None:
    client = connect_redis(redis_sentinel.url, timeout_s=0.5, retries=1)
    key = f"test:sentinel:{uuid.uuid4().hex}"
    try:
        assert await client.set(key, "before")
        # WAIT: the replica has the write before the master dies, so the failover loses nothing.
        assert await client.execute_command("WAIT", 1, 2000) == 1
        old_master = redis_sentinel.current_master()
        assert old_master is redis_sentinel.master

        redis_sentinel.master.kill()

        deadline = time.monotonic() + 20
        while True:
            try:
                value = await client.get(key)
                break
            except Exception:
                assert time.monotonic() < deadline, "no failover within 20 s"
                await asyncio.sleep(0.2)
        assert value == b"before"
        assert redis_sentinel.current_master() is redis_sentinel.replicas[0]
        assert await client.set(key, "after")
        assert await client.get(key) == b"after"
    finally:
        await client.aclose()


async def test_sentinel_broker_carries_celery_messages(redis_sentinel: RedisSentinelGroup) -> None:
    broker = celery_broker(redis_sentinel.url)
    queue = f"test-sentinel-{uuid.uuid4().hex[:8]}"

    def round_trip() -> object:
        with kombu.Connection(broker.url, transport_options=broker.transport_options) as conn:
            simple = conn.SimpleQueue(queue)
            simple.put({"hello": "sentinel"})
            message = simple.get(timeout=5)
            message.ack()
            simple.close()
            return message.payload

    assert await asyncio.to_thread(round_trip) == {"hello": "sentinel"}


def test_celery_app_runs_a_task_through_a_sentinel_managed_master(
    redis_sentinel: RedisSentinelGroup,
) -> None:
    app = create_celery_app(WorkerSettings(redis_url=redis_sentinel.url), queues=())
    assert (
        app.conf.broker_transport_options["master_name"]
        == app.conf.result_backend_transport_options["master_name"]
    )

    @app.task(name="tessera.core.sentinel_echo")
    def echo(payload: str) -> str:
        return payload.upper()

    with start_worker(app, pool="solo", perform_ping_check=False, queues=["core"]):
        assert echo.delay("through sentinel").get(timeout=30) == "THROUGH SENTINEL"
    app.close()


async def test_cluster_client_spreads_keys_and_runs_scripts_on_hash_tagged_keys(
    redis_cluster: RedisCluster,
) -> None:
    client = connect_redis_cluster(redis_cluster.url)
    prefix = f"test:cluster:{uuid.uuid4().hex}"
    keys = [f"{prefix}:{index}" for index in range(30)]
    try:
        for index, key in enumerate(keys):
            assert await client.set(key, index)
        assert [int(await client.get(key)) for key in keys] == list(range(30))
        slots = {await client.cluster_keyslot(key) for key in keys}
        owners = {client.get_node_from_key(key).port for key in keys}
        assert len(owners) == len(redis_cluster.nodes), "keys land on every master"
        assert len(slots) > 1

        # One hash tag puts both keys in one slot, as a multi-key script needs.
        tagged = [f"{{{prefix}}}:hits", f"{{{prefix}}}:total"]
        script = client.register_script(INCREMENT_BOTH)
        assert await script(keys=tagged, args=[5]) == 5
        assert await script(keys=tagged, args=[5]) == 10
    finally:
        for key in [*keys, f"{{{prefix}}}:hits", f"{{{prefix}}}:total"]:
            await client.delete(key)
        await client.aclose()
