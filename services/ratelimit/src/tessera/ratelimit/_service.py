from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from envoy.service.ratelimit.v3 import (  # type: ignore[import-untyped]  # xds-protos has no stubs
    rls_pb2_grpc,
)
from redis.asyncio import Redis

from tessera.core.etcd import EtcdClient
from tessera.core.plugins import LIMITERS, Limiter, load_plugins
from tessera.core.redis import connect_redis
from tessera.core.server import ServiceBinding
from tessera.limiters import LimitEvaluator
from tessera.ratelimit._adaptive import AdaptiveStore
from tessera.ratelimit._breaker import BreakerStore
from tessera.ratelimit._circuit import RedisCircuit
from tessera.ratelimit._config_store import ConfigStore
from tessera.ratelimit._decider import Decider
from tessera.ratelimit._envoy_servicer import ENVOY_SERVICE, EnvoyRateLimitServicer
from tessera.ratelimit._limiter_servicer import (
    RATE_LIMITER_SERVICE,
    RateLimiterServicer,
    add_rate_limiter_to_server,
)
from tessera.ratelimit._over_limit_cache import OverLimitCache
from tessera.ratelimit._rulebook import RuleBook, load_directory
from tessera.ratelimit._settings import RateLimitSettings
from tessera.ratelimit._usage import UsageRecorder


def installed_limiters() -> dict[str, Limiter]:
    """Create one instance of every limiter installed under `tessera.limiters`."""
    plugins = load_plugins(LIMITERS)
    return {name: plugin.create() for name, plugin in plugins.loaded.items()}


@dataclass(frozen=True, slots=True)
class RateLimitService:
    """A running rate-limit service's parts: its bindings and what they share.

    Attributes:
        bindings: Envoy's RateLimitService and tessera.ratelimit.v1.RateLimiter.
        decider: The shared decision path.
        rules: The serving configuration.

    """

    bindings: tuple[ServiceBinding, ...]
    decider: Decider
    rules: RuleBook


@contextlib.asynccontextmanager
async def rate_limit_service(settings: RateLimitSettings) -> AsyncIterator[RateLimitService]:
    """Build the service: load the start-up directory, connect Redis and etcd, follow etcd.

    The configuration watch runs in the background for as long as the context is open; while
    etcd is unreachable the last applied configuration keeps serving.

    Raises:
        ConfigError: The configuration directory holds invalid files.

    """
    limiters = installed_limiters()
    files = {}
    if settings.ratelimit_config_dir is not None:
        files = load_directory(settings.ratelimit_config_dir, algorithms=limiters)
    rules = RuleBook(files)
    # No retries: the circuit and the failure policy answer instead of a caller waiting.
    redis: Redis = connect_redis(settings, timeout_s=settings.ratelimit_redis_timeout_s, retries=0)
    usage = UsageRecorder(redis, settings.ratelimit_usage_flush_s)
    decider = Decider(
        rules,
        LimitEvaluator(redis),
        limiters,
        RedisCircuit(settings.ratelimit_circuit_open_s),
        BreakerStore(redis),
        OverLimitCache(settings.ratelimit_local_cache_size),
        AdaptiveStore(redis, settings.ratelimit_adaptive_refresh_s),
        usage,
    )
    etcd = EtcdClient.from_settings(settings)
    store = ConfigStore(etcd, algorithms=limiters)
    try:
        # Not connected first: with etcd down the start-up files serve while the watch retries.
        follower = asyncio.create_task(store.follow(rules), name="ratelimit-config-watch")
        flusher = asyncio.create_task(usage.run(), name="ratelimit-usage-flush")
        try:
            yield RateLimitService(
                bindings=(
                    ServiceBinding(
                        ENVOY_SERVICE,
                        EnvoyRateLimitServicer(decider),
                        rls_pb2_grpc.add_RateLimitServiceServicer_to_server,
                    ),
                    ServiceBinding(
                        RATE_LIMITER_SERVICE,
                        RateLimiterServicer(decider),
                        add_rate_limiter_to_server,
                    ),
                ),
                decider=decider,
                rules=rules,
            )
        finally:
            for task in (follower, flusher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        await etcd.close()
        await redis.aclose()
