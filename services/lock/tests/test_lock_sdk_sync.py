from __future__ import annotations

import asyncio
import uuid

from tessera.client.lock import SyncLockClient
from tessera.testing import RunningService


def _hold_twice(target: str, name: str) -> tuple[int, int, bool]:
    with SyncLockClient(target) as client:
        with client.lock(name, ttl=5) as first:
            valid = client.validate_token(name, first.token)
        with client.lock(name, ttl=5) as second:
            return first.token, second.token, valid


async def test_lock_sync_facade_holds_and_releases(lock_service: RunningService) -> None:
    # The facade blocks its caller, so it runs in a thread while this loop serves the service.
    name = f"sync/{uuid.uuid4().hex}"
    first, second, valid = await asyncio.to_thread(_hold_twice, lock_service.server.address, name)
    assert valid
    assert second > first
