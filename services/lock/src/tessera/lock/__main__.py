"""Run the lock service: `python -m tessera.lock` or `tessera-lock`."""

from __future__ import annotations

import asyncio

import structlog

from tessera.client.registry import self_registration
from tessera.core import TesseraError
from tessera.core.server import serve
from tessera.lock._binding import lock_binding
from tessera.lock._settings import LockSettings


async def _serve(settings: LockSettings) -> None:
    # Registering in the registry (when TESSERA_REGISTRY_ENDPOINTS is set) needs the server's
    # event loop, so this runs `serve` itself rather than `tessera.core.server.run`.
    async with self_registration(settings):
        await serve(settings, [lock_binding(settings)])


def main() -> None:
    """Serve the lock service with settings from the environment until SIGTERM or SIGINT.

    Raises:
        SystemExit: With status 1 when the server cannot start.

    """
    settings = LockSettings.from_env()
    try:
        asyncio.run(_serve(settings))
    except TesseraError as error:
        structlog.get_logger(__name__).error("lock_failed", error=error.message)
        raise SystemExit(1) from error


if __name__ == "__main__":
    main()
