"""Run the rate-limit service: `python -m tessera.ratelimit` or `tessera-ratelimit`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from tessera.client.registry import self_registration
from tessera.core.server import ServiceBinding, run
from tessera.ratelimit._service import rate_limit_service
from tessera.ratelimit._settings import RateLimitSettings


@asynccontextmanager
async def _bindings(settings: RateLimitSettings) -> AsyncIterator[Sequence[ServiceBinding]]:
    async with rate_limit_service(settings) as service, self_registration(settings):
        yield service.bindings


def main() -> None:
    """Serve until SIGTERM or SIGINT; exit 1 when the service cannot start."""
    run(RateLimitSettings.from_env, _bindings)


if __name__ == "__main__":
    main()
