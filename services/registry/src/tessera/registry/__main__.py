"""Run one registry process: `python -m tessera.registry` (console script `tessera-registry`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tessera.client.registry import self_registration
from tessera.core.server import ServiceBinding, freeze_startup_heap, run
from tessera.registry._service import RegistryService
from tessera.registry._settings import RegistrySettings

#: Python's default thresholds (700, 10, 10) made the collector take about a third of the server
#: CPU of a Watch message once a thousand streams were open (bench/registry_discovery.py: 62-64 ->
#: 43 µs per message): a young collection every few hundred messages and a full one, over every
#: open stream's objects, every hundred of those.
_GC_THRESHOLDS = (10_000, 50, 100)


@asynccontextmanager
async def _bindings(settings: RegistrySettings) -> AsyncIterator[list[ServiceBinding]]:
    # The etcd connection and the liveness tasks must live on the server's event loop.
    async with RegistryService(settings) as registry, self_registration(settings):
        freeze_startup_heap(_GC_THRESHOLDS)
        yield [registry.binding]


def main() -> None:
    """Serve the registry with settings from `TESSERA_*` until SIGTERM or SIGINT.

    Raises:
        SystemExit: With status 1 when etcd is unreachable or the server cannot start.

    """
    run(RegistrySettings.from_env, _bindings)


if __name__ == "__main__":
    main()
