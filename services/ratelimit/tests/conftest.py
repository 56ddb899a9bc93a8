from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tessera.core.embedded import EtcdServer, RedisServer
from tessera.ratelimit import RateLimitService, RateLimitSettings, rate_limit_service
from tessera.testing import RunningService, serve_in_process

CONFIGS = Path(__file__).with_name("configs")

Starter = Callable[..., AbstractAsyncContextManager[tuple[RunningService, RateLimitService]]]


@pytest.fixture
def start_ratelimit(etcd_server: EtcdServer, redis_server: RedisServer) -> Starter:
    """Start a rate-limit server on the session etcd and Redis (or the URLs given)."""

    @asynccontextmanager
    async def start(
        **overrides: Any,
    ) -> AsyncIterator[tuple[RunningService, RateLimitService]]:
        options: dict[str, Any] = {
            "port": 0,
            "metrics_port": None,
            "etcd_endpoints": [etcd_server.endpoint],
            "redis_url": redis_server.url,
            "ratelimit_config_dir": CONFIGS,
        }
        settings = RateLimitSettings(**(options | overrides))
        async with (
            rate_limit_service(settings) as service,
            serve_in_process(service.bindings, settings) as running,
        ):
            yield running, service

    return start
