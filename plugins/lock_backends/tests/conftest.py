"""Fixtures the lock backends' tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tessera.core.embedded import ZooKeeperServer
from tessera.lock_backends import ZooKeeperLockBackend, ZooKeeperSettings


@pytest_asyncio.fixture
async def zookeeper_replicas(
    zookeeper_server: ZooKeeperServer,
) -> AsyncIterator[list[ZooKeeperLockBackend]]:
    """Two backends on one ZooKeeper: two service replicas."""
    backends = [
        ZooKeeperLockBackend(ZooKeeperSettings(), hosts=zookeeper_server.hosts) for _ in range(2)
    ]
    yield backends
    for backend in backends:
        await backend.close()
