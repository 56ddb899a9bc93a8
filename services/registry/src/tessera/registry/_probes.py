from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from tessera.core import NotFoundError, PluginError, ValidationError
from tessera.core.etcd import EtcdClient
from tessera.core.plugins import CheckResult, HealthCheck, HealthStatus, PluginSet
from tessera.core.redis import redis_errors
from tessera.proto.registry.v1 import registry_pb2
from tessera.registry._keys import INSTANCES, ServiceName
from tessera.registry._store import InstanceStore

#: Timeout of a probe whose spec gives none.
DEFAULT_PROBE_TIMEOUT_S = 2.0
#: Probes running at once.
MAX_CONCURRENT_PROBES = 64
#: Streak counters outlive a missed run or two, then expire with an instance that is gone.
STREAK_TTL_S = 600
#: Prefix of the Redis keys of probe streaks.
STREAK_PREFIX = "tessera:registry:probe:"


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """What one probe of one persistent instance found and did.

    Attributes:
        instance: `namespace/service/id`.
        status: The check's verdict.
        detail: The check's explanation.
        healthy: The instance's health after this probe.
        changed: Whether this probe flipped the stored health.

    """

    instance: str
    status: HealthStatus
    detail: str
    healthy: bool
    changed: bool


def streak_key(instance: registry_pb2.Instance) -> str:
    """Return the Redis key of an instance's anti-flap streaks (hash tag: the instance)."""
    return f"{STREAK_PREFIX}{{{instance.namespace}/{instance.service}/{instance.id}}}"


class Prober:
    """Probes persistent instances with health-check plugins, with anti-flap counters.

    A probe that passes adds to the instance's success streak and clears its failure streak (and
    the reverse), in one Redis transaction. A healthy instance turns unhealthy after
    `failures_before_critical` failures in a row; an unhealthy one turns healthy after
    `successes_before_passing` passes in a row (Consul's counters). Only those flips write to
    etcd (compare-and-swap); persistent instances are never deleted by probing.

    Concurrency: one event loop; safe to run from several workers at once (streaks are atomic
    and flips are compare-and-swap), though beat runs it once per interval.

    Args:
        etcd: Where instances are read and flipped.
        redis: Where streaks are counted.
        checks: The installed health-check plugins.

    """

    def __init__(self, etcd: EtcdClient, redis: Redis, checks: PluginSet[HealthCheck]) -> None:
        self._etcd = etcd
        self._redis = redis
        self._checks = checks
        self._store = InstanceStore(etcd, owner="")
        self._built: dict[str, HealthCheck] = {}

    async def probe_all(self) -> list[ProbeOutcome]:
        """Probe every persistent instance that has a health check, once.

        Raises:
            BackendError: etcd or Redis failed.

        """
        snapshot = await self._etcd.get_prefix(INSTANCES)
        instances = [registry_pb2.Instance.FromString(item.value) for item in snapshot.items]
        probed = [i for i in instances if not i.ephemeral and i.health_check.kind]
        limit = asyncio.Semaphore(MAX_CONCURRENT_PROBES)

        async def probe(instance: registry_pb2.Instance) -> ProbeOutcome:
            async with limit:
                return await self._probe(instance)

        return list(await asyncio.gather(*(probe(i) for i in probed)))

    async def _probe(self, instance: registry_pb2.Instance) -> ProbeOutcome:
        spec = instance.health_check
        result = await self._run(instance, spec)
        passed = result.status is HealthStatus.PASSING
        successes, failures = await self._count(instance, passed=passed)
        healthy = instance.healthy
        if healthy and failures >= max(1, spec.failures_before_critical):
            healthy = False
        elif not healthy and successes >= max(1, spec.successes_before_passing):
            healthy = True
        changed = healthy != instance.healthy
        if changed:
            changed = await self._flip(instance, healthy)
        name = f"{instance.namespace}/{instance.service}/{instance.id}"
        return ProbeOutcome(name, result.status, result.detail, healthy, changed)

    async def _run(
        self, instance: registry_pb2.Instance, spec: registry_pb2.HealthCheckSpec
    ) -> CheckResult:
        host = f"[{instance.host}]" if ":" in instance.host else instance.host
        target = spec.target or f"{host}:{instance.port}"
        try:
            check = self._built.get(spec.kind)
            if check is None:
                check = self._built[spec.kind] = self._checks.get(spec.kind).create()
            return await check.check(target, spec.timeout_s or DEFAULT_PROBE_TIMEOUT_S)
        except (PluginError, ValidationError) as error:
            # A missing plugin or a target it refuses is the instance's problem, not the job's.
            return CheckResult(HealthStatus.CRITICAL, error.message)

    async def _count(self, instance: registry_pb2.Instance, *, passed: bool) -> tuple[int, int]:
        key = streak_key(instance)
        grow, reset = ("successes", "failures") if passed else ("failures", "successes")
        with redis_errors("health probe streak"):
            pipeline = self._redis.pipeline(transaction=True)
            pipeline.hset(key, mapping={reset: 0})
            pipeline.hincrby(key, grow, 1)
            pipeline.expire(key, STREAK_TTL_S)
            results: Sequence[int] = await pipeline.execute()
        streak = int(results[1])
        return (streak, 0) if passed else (0, streak)

    async def _flip(self, instance: registry_pb2.Instance, healthy: bool) -> bool:
        name = ServiceName(instance.namespace, instance.service)

        def mark(stored: registry_pb2.Instance) -> None:
            stored.healthy = healthy

        try:
            await self._store.update(name, instance.id, mark)
        except NotFoundError:
            return False  # deregistered while it was probed
        return True
