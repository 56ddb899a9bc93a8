"""Run the rate-limit service: `python -m tessera.ratelimit` or `tessera-ratelimit`."""

from __future__ import annotations

import asyncio

import structlog

from tessera.client.registry import self_registration
from tessera.core import TesseraError
from tessera.core.server import serve
from tessera.ratelimit._service import rate_limit_service
from tessera.ratelimit._settings import RateLimitSettings

_log = structlog.get_logger("tessera.ratelimit")


async def _serve(settings: RateLimitSettings) -> None:
    async with rate_limit_service(settings) as service, self_registration(settings):
        await serve(settings, service.bindings)


def main() -> None:
    """Serve until SIGTERM or SIGINT; exit 1 when the service cannot start."""
    try:
        settings = RateLimitSettings.from_env()
        asyncio.run(_serve(settings))
    except TesseraError as error:
        _log.error("ratelimit failed", error=type(error).__name__, message=error.message)
        raise SystemExit(1) from error


if __name__ == "__main__":
    main()
