"""Run one registry process: `python -m tessera.registry` (console script `tessera-registry`).

The registry needs its etcd connection and background tasks on the server's event loop before
it can hand a binding to the server kit, so it runs `serve` itself inside `RegistryService`
instead of calling `tessera.core.server.run`.
"""

from __future__ import annotations

import asyncio

import structlog

from tessera.client.registry import self_registration
from tessera.core import TesseraError
from tessera.core.observability import configure_logging
from tessera.core.server import serve
from tessera.registry._service import RegistryService
from tessera.registry._settings import RegistrySettings


async def _serve(settings: RegistrySettings) -> None:
    async with RegistryService(settings) as registry, self_registration(settings):
        await serve(settings, [registry.binding])


def main() -> None:
    """Serve the registry with settings from `TESSERA_*` until SIGTERM or SIGINT.

    Raises:
        SystemExit: With status 1 when etcd is unreachable or the server cannot start.

    """
    settings = RegistrySettings.from_env()
    configure_logging(settings)
    try:
        asyncio.run(_serve(settings))
    except TesseraError as error:
        structlog.get_logger(__name__).error("registry_failed", error=error.message)
        raise SystemExit(1) from error


if __name__ == "__main__":
    main()
