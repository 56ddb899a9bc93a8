"""Run the lock service: `python -m tessera.lock` or `tessera-lock`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tessera.client.registry import self_registration
from tessera.core.server import ServiceBinding, run
from tessera.lock._binding import lock_binding
from tessera.lock._settings import LockSettings


@asynccontextmanager
async def _bindings(settings: LockSettings) -> AsyncIterator[list[ServiceBinding]]:
    # Registering in the registry (when TESSERA_REGISTRY_ENDPOINTS is set) needs the server's loop.
    async with self_registration(settings):
        yield [lock_binding(settings)]


def main() -> None:
    """Serve the lock service with settings from the environment until SIGTERM or SIGINT.

    Raises:
        SystemExit: With status 1 when the server cannot start.

    """
    run(LockSettings.from_env, _bindings)


if __name__ == "__main__":
    main()
