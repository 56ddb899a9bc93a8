"""Background jobs of the registry (queue `registry`, entry point `tessera.jobs`).

The elected leader among registry replicas (`Leadership`) is their only scheduler: while it
leads it sends these tasks on their intervals (`JobDispatcher`), each with its term, and a task
whose term is no longer the leader's does nothing (fencing). Beat schedules none of them.

- `tessera.registry.probe`: probes each persistent instance that has a health check with its
  `tessera.health_checks` plugin and flips its health after the spec's streak of failures or
  passes (`Prober`).
- `tessera.registry.reap`: deletes what nothing else would ever remove: ephemeral instances
  attached to no lease (they would never expire) and probe streaks of instances that are gone.
- `tessera.registry.stats`: counts instances per service and writes them to Redis
  (`STATS_KEY`, JSON) for operators and dashboards.

Every task is idempotent: a run that overlaps another is harmless (streaks are atomic, writes
are compare-and-swap).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from redis.asyncio import Redis

from tessera.client.registry import STATS_KEY, STATS_TTL_S, RegistryStats, ServiceStats
from tessera.core import TesseraSettings
from tessera.core.etcd import EtcdClient
from tessera.core.jobs import JobContext
from tessera.core.plugins import HEALTH_CHECKS, load_plugins
from tessera.core.redis import connect_redis, redis_errors
from tessera.proto.registry.v1 import registry_pb2
from tessera.registry._keys import INSTANCES
from tessera.registry._leader import current_term
from tessera.registry._probes import STREAK_PREFIX, Prober, streak_key
from tessera.registry._store import InstanceStore

__all__ = ["STATS_KEY", "STATS_TTL_S", "probe_once", "reap_once", "register", "stats_once"]

Job = Callable[[EtcdClient, Redis], Awaitable[dict[str, int]]]


async def _run(settings: TesseraSettings, term: int | None, job: Job) -> dict[str, int]:
    """Run `job` with fresh clients, unless `term` is given and is no longer the leader's."""
    redis = connect_redis(settings)
    try:
        async with EtcdClient.from_settings(settings) as etcd:
            if term is not None and await current_term(etcd) != term:
                structlog.get_logger(__name__).info("registry_job_fenced", term=term)
                return {"skipped": 1}
            return await job(etcd, redis)
    finally:
        await redis.aclose()


async def probe_once(settings: TesseraSettings, term: int | None = None) -> dict[str, int]:
    """Probe every persistent instance once, with clients built from `settings`.

    Args:
        settings: Where etcd and Redis are.
        term: The leader term the task was sent with; None runs unconditionally.

    Returns:
        Counts for the task's result: `probed`, `passing`, `flipped` (or `skipped` when fenced).

    Raises:
        BackendError: etcd or Redis failed (the task fails; the leader sends it again).

    """

    async def probe(etcd: EtcdClient, redis: Redis) -> dict[str, int]:
        outcomes = await Prober(etcd, redis, load_plugins(HEALTH_CHECKS)).probe_all()
        for outcome in outcomes:
            if outcome.changed:
                structlog.get_logger(__name__).info(
                    "registry_health_changed",
                    instance=outcome.instance,
                    healthy=outcome.healthy,
                    detail=outcome.detail,
                )
        return {
            "probed": len(outcomes),
            "passing": sum(o.healthy for o in outcomes),
            "flipped": sum(o.changed for o in outcomes),
        }

    return await _run(settings, term, probe)


async def reap_once(settings: TesseraSettings, term: int | None = None) -> dict[str, int]:
    """Delete ephemeral instances without a lease and probe streaks of vanished instances.

    Returns:
        `leaseless` and `streaks` deleted (or `skipped` when fenced).

    Raises:
        BackendError: etcd or Redis failed.

    """

    async def reap(etcd: EtcdClient, redis: Redis) -> dict[str, int]:
        store = InstanceStore(etcd, owner="")
        snapshot = await etcd.get_prefix(INSTANCES)
        present = set()
        leaseless = 0
        for item in snapshot.items:
            instance = registry_pb2.Instance.FromString(item.value)
            present.add(streak_key(instance))
            if instance.ephemeral and item.lease == 0:
                # Only if unchanged since read: a replica adopting it meanwhile wins.
                leaseless += await store.delete_unchanged(item.key, item.mod_revision)
        streaks = 0
        with redis_errors("registry reap"):
            async for key in redis.scan_iter(match=f"{STREAK_PREFIX}*", count=500):
                text = key.decode() if isinstance(key, bytes) else key
                if text not in present:
                    streaks += await redis.delete(text)
        return {"leaseless": leaseless, "streaks": streaks}

    return await _run(settings, term, reap)


async def stats_once(settings: TesseraSettings, term: int | None = None) -> dict[str, int]:
    """Count instances per service and write the counts to Redis at `STATS_KEY`.

    The JSON document is `RegistryStats.to_document()`; `tessera.client.registry.read_stats`
    reads it (`tessera registry stats`).

    Returns:
        `services` and `instances` counted (or `skipped` when fenced).

    Raises:
        BackendError: etcd or Redis failed.

    """

    async def stats(etcd: EtcdClient, redis: Redis) -> dict[str, int]:
        snapshot = await etcd.get_prefix(INSTANCES)
        services: dict[tuple[str, str], Counter[str]] = {}
        for item in snapshot.items:
            instance = registry_pb2.Instance.FromString(item.value)
            counts = services.setdefault((instance.namespace, instance.service), Counter())
            counts["instances"] += 1
            counts["healthy"] += instance.healthy
            counts["serving"] += instance.status == registry_pb2.SERVING_STATUS_SERVING
            counts["ephemeral" if instance.ephemeral else "persistent"] += 1
        document = RegistryStats(
            at=time.time(),
            revision=snapshot.revision,
            services=tuple(
                ServiceStats(
                    namespace, service, counts["instances"], counts["healthy"],
                    counts["serving"], counts["ephemeral"], counts["persistent"],
                )
                for (namespace, service), counts in sorted(services.items())
            ),
        ).to_document()  # fmt: skip
        with redis_errors("registry stats"):
            await redis.set(STATS_KEY, json.dumps(document), ex=STATS_TTL_S)
        return {"services": len(services), "instances": len(snapshot.items)}

    return await _run(settings, term, stats)


def register(context: JobContext) -> None:
    """Define `tessera.registry.probe`, `.reap` and `.stats`; the registry leader sends them."""
    settings = context.settings
    options: dict[str, Any] = {"acks_late": True, "reject_on_worker_lost": True}

    @context.task("probe", **options)
    def probe(term: int | None = None) -> dict[str, int]:
        return asyncio.run(probe_once(settings, term))

    @context.task("reap", **options)
    def reap(term: int | None = None) -> dict[str, int]:
        return asyncio.run(reap_once(settings, term))

    @context.task("stats", **options)
    def stats(term: int | None = None) -> dict[str, int]:
        return asyncio.run(stats_once(settings, term))
