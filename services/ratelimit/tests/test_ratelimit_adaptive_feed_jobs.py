"""End to end: checks -> usage buckets -> a real Celery worker's usage feed -> adaptive limit.

A rate-limit server and a worker (queue `ratelimit`) share a Redis of the test's own, so the
feed this test publishes reaches no other test's adaptive limits.
"""

import asyncio
import uuid
from collections.abc import Callable

import grpc

from tessera.client.ratelimit import RateLimiter
from tessera.core.embedded import EtcdServer, RedisServer
from tessera.core.jobs import WorkerSettings, create_celery_app
from tessera.core.redis import connect_redis
from tessera.proto.ratelimit.v1 import ratelimit_pb2 as pb
from tessera.proto.ratelimit.v1 import ratelimit_pb2_grpc
from tessera.ratelimit import read_usage
from tessera.ratelimit.jobs import RuleRates, usage_feed_key
from tessera.testing import JobsProcess, ServerFactory

WORKER_TIMEOUT_S = 90.0
# The feed counts whole minute buckets back to the one FEED_WINDOW_S ago, so it holds every
# decision of the last FEED_WINDOW_S (here the whole test once the worker is up), over a span
# of 60 to 120 s. A shorter window loses decisions made before the last minute boundary.
FEED_WINDOW_S = 60.0
# Busy decisions: (3 + BUSY) / 120 s / 50 a second >= 0.5 whatever the span.
BUSY = 4000


async def _flushed(redis_url: str, decisions: int) -> None:
    # The service adds its counts to the usage buckets every 0.1 s.
    client = connect_redis(redis_url)
    try:
        for _ in range(200):
            rows = await read_usage(client, since_s=600)
            if sum(row.total for row in rows if row.domain == "api") >= decisions:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"usage never reached {decisions}: {rows}")
    finally:
        await client.aclose()


async def test_ratelimit_adaptive_limit_follows_the_usage_feed_of_a_real_worker(
    start_ratelimit,
    redis_factory: ServerFactory[RedisServer],
    etcd_server: EtcdServer,
    jobs_process: Callable[..., JobsProcess],
) -> None:
    redis = await asyncio.to_thread(redis_factory)
    env = {"TESSERA_REDIS_URL": redis.url, "TESSERA_ETCD_ENDPOINTS": etcd_server.endpoint}
    worker = jobs_process("worker", "-Q", "ratelimit", "-c", "1", env=env)
    celery = create_celery_app(WorkerSettings(redis_url=redis.url), queues=())
    target = {"gradient": uuid.uuid4().hex}  # token bucket, gradient 10..100 from 50 a second
    message = pb.Descriptor(entries=[pb.Entry(key="gradient", value=target["gradient"])])

    async def aggregate(feed_window_s: float = FEED_WINDOW_S) -> dict[str, int]:
        result = celery.send_task("tessera.ratelimit.aggregate_usage", args=[3600.0, feed_window_s])
        counts: dict[str, int] = await asyncio.to_thread(result.get, timeout=WORKER_TIMEOUT_S)
        return counts

    try:
        async with (
            start_ratelimit(redis_url=redis.url, ratelimit_usage_flush_s=0.1) as (running, _),
            RateLimiter.connect(running.server.address) as limiter,
            grpc.aio.insecure_channel(running.server.address) as channel,
        ):
            stub = ratelimit_pb2_grpc.RateLimiterStub(channel)

            async def outcome() -> pb.AdaptiveLimit:
                request = pb.ReportOutcomeRequest(domain="api", target=message, success=True)
                request.latency.FromMilliseconds(10)
                return (await stub.ReportOutcome(request)).adaptive

            # The worker is up (a run without a feed) before the first decision, so every
            # decision below is seconds old when a feed is computed: inside the window.
            assert await aggregate(feed_window_s=0) == {"rules": 0, "decisions": 0}
            # Idle: 3 decisions in at least 60 s, on a limit of 50 a second.
            for _ in range(3):
                assert await limiter.check("api", [target])
            await _flushed(redis.url, 3)
            assert (await aggregate())["decisions"] == 3, worker.log()
            idle = await outcome()
            assert idle.limit == 50  # a steady gradient step would have grown it
            assert idle.usage.increase_held
            assert 0 < idle.usage.utilisation < 0.5
            assert idle.usage.offered_per_s == idle.usage.admitted_per_s > 0
            idle_window = idle.usage.window.ToTimedelta().total_seconds()
            assert FEED_WINDOW_S <= idle_window <= FEED_WINDOW_S + 60
            assert round(idle.usage.offered_per_s * idle_window) == 3
            explained = await stub.Explain(pb.ExplainRequest(domain="api", descriptor=message))
            assert explained.decision.adaptive.usage == idle.usage
            assert explained.decision.limit == 50

            # Busy: 4,000 more decisions (most denied by the bucket) in at most 120 s.
            for _ in range(BUSY // 100):
                await limiter.check("api", [target] * 100)
            await _flushed(redis.url, 3 + BUSY)
            assert (await aggregate())["decisions"] == 3 + BUSY, worker.log()
            busy = await outcome()
            assert not busy.usage.increase_held
            assert busy.usage.utilisation >= (3 + BUSY) / (FEED_WINDOW_S + 60) / 50 > 0.5
            assert busy.usage.denied_per_s > 0
            assert busy.limit > 50
            window = busy.usage.window.ToTimedelta().total_seconds()
            assert FEED_WINDOW_S <= window <= FEED_WINDOW_S + 60
            assert round(busy.usage.offered_per_s * window) == 3 + BUSY
            # The feed is one hash per domain in the test's Redis, as docs/keyspace.md says.
            client = connect_redis(redis.url)
            try:
                fields = await client.hgetall(usage_feed_key("api"))
                assert 0 < await client.ttl(usage_feed_key("api")) <= 180
            finally:
                await client.aclose()
            published = {k.decode(): v.decode() for k, v in fields.items()}
            assert float(published.pop("\x1fwindow")) == window
            assert busy.usage.offered_per_s in [
                RuleRates.decode(value).offered_per_s for value in published.values()
            ]
    finally:
        celery.close()
