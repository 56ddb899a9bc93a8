"""Run the governance service: `python -m tessera.governance` or `tessera-governance`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tessera.client.registry import self_registration
from tessera.core.etcd import EtcdClient
from tessera.core.server import ServiceBinding, run
from tessera.governance._servicer import governance_binding
from tessera.governance._settings import GovernanceSettings


@asynccontextmanager
async def _bindings(settings: GovernanceSettings) -> AsyncIterator[list[ServiceBinding]]:
    # The etcd client must live on the server's event loop.
    async with EtcdClient.from_settings(settings) as etcd, self_registration(settings):
        yield [governance_binding(etcd, settings)]


def main() -> None:
    """Serve governance with settings from `TESSERA_*` until SIGTERM or SIGINT.

    Raises:
        SystemExit: With status 1 when etcd is unreachable or the server cannot start.

    """
    run(GovernanceSettings.from_env, _bindings)


if __name__ == "__main__":
    main()
