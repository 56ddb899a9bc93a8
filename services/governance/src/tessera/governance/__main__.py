"""Run the governance service: `python -m tessera.governance` or `tessera-governance`."""

from __future__ import annotations

import asyncio

import structlog

from tessera.client.registry import self_registration
from tessera.core import TesseraError
from tessera.core.etcd import EtcdClient
from tessera.core.observability import configure_logging
from tessera.core.server import serve
from tessera.governance._servicer import governance_binding
from tessera.governance._settings import GovernanceSettings


async def _serve(settings: GovernanceSettings) -> None:
    # The etcd client must live on the server's event loop, so this runs `serve` itself
    # rather than `tessera.core.server.run`.
    async with EtcdClient.from_settings(settings) as etcd, self_registration(settings):
        await serve(settings, [governance_binding(etcd, settings)])


def main() -> None:
    """Serve governance with settings from `TESSERA_*` until SIGTERM or SIGINT.

    Raises:
        SystemExit: With status 1 when etcd is unreachable or the server cannot start.

    """
    settings = GovernanceSettings.from_env()
    configure_logging(settings)
    try:
        asyncio.run(_serve(settings))
    except TesseraError as error:
        structlog.get_logger(__name__).error("governance_failed", error=error.message)
        raise SystemExit(1) from error


if __name__ == "__main__":
    main()
