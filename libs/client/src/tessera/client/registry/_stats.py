from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from tessera.core import BackendError
from tessera.core.redis import redis_errors

#: Redis key of the latest statistics (JSON), written by the registry's `tessera.registry.stats`.
STATS_KEY = "tessera:registry:stats"
#: Seconds the statistics live in Redis: older ones are gone (no leader, or no worker).
STATS_TTL_S = 600

_COUNTS = ("instances", "healthy", "serving", "ephemeral", "persistent")


@dataclass(frozen=True, slots=True)
class ServiceStats:
    """The instance counts of one service when the statistics were computed.

    Attributes:
        namespace: The service's namespace.
        service: The service's name.
        instances: Every instance.
        healthy: Instances the registry holds healthy.
        serving: Instances whose status is SERVING.
        ephemeral: Instances kept alive by heartbeats.
        persistent: Instances that stay until deregistered.

    """

    namespace: str
    service: str
    instances: int
    healthy: int
    serving: int
    ephemeral: int
    persistent: int


@dataclass(frozen=True, slots=True)
class RegistryStats:
    """The statistics the registry leader's job last computed, from etcd.

    Attributes:
        at: When they were computed (Unix time, seconds).
        revision: The etcd revision they were counted at.
        services: One entry per service with at least one instance, sorted by name.

    """

    at: float
    revision: int
    services: tuple[ServiceStats, ...]

    def to_document(self) -> dict[str, Any]:
        """Return the JSON document kept at `STATS_KEY`.

        It is `{"at", "revision", "services": {"<namespace>/<service>": {"instances",
        "healthy", "serving", "ephemeral", "persistent"}}}`.
        """
        return {
            "at": self.at,
            "revision": self.revision,
            "services": {
                f"{s.namespace}/{s.service}": {count: getattr(s, count) for count in _COUNTS}
                for s in self.services
            },
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> RegistryStats:
        """Build the statistics from the JSON document kept at `STATS_KEY` (missing counts: 0).

        Raises:
            KeyError, ValueError, TypeError: The document is not one `to_document` wrote.

        """
        services = []
        for name, counts in sorted(document["services"].items()):
            namespace, _, service = name.partition("/")
            services.append(
                ServiceStats(namespace, service, *(int(counts.get(c, 0)) for c in _COUNTS))
            )
        return cls(float(document["at"]), int(document["revision"]), tuple(services))


async def read_stats(redis: Redis) -> RegistryStats | None:
    """Read the statistics the registry leader last computed.

    Args:
        redis: The Redis the registry's workers use (`TESSERA_REDIS_URL`).

    Returns:
        The statistics, or None when there are none younger than `STATS_TTL_S` (no registry
        leader runs jobs, or no worker serves queue `registry`).

    Raises:
        BackendError: Redis failed, or the key holds something else than statistics.

    """
    with redis_errors("registry stats"):
        raw = await redis.get(STATS_KEY)
    if raw is None:
        return None
    try:
        return RegistryStats.from_document(json.loads(raw))
    except (KeyError, ValueError, TypeError, AttributeError) as error:
        raise BackendError(
            f"{STATS_KEY} does not hold registry statistics: {error}",
            backend="redis",
            retryable=False,
        ) from error
