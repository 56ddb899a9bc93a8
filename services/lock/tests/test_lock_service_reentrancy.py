from __future__ import annotations

import uuid

import pytest

from tessera.client.lock import LockClient
from tessera.core import FailedPreconditionError


async def test_lock_reentrant_acquisitions_count_holds_on_one_token(
    lock_client: LockClient,
) -> None:
    name = f"reentrant/{uuid.uuid4().hex}"
    session = await lock_client.open_session(5)
    try:
        first = await lock_client.acquire(name, session, wait=1)
        assert first is not None
        assert first.holds == 1
        again = await lock_client.acquire(name, session, wait=1, reentrant=True)
        assert again is not None
        assert (again.token, again.holds) == (first.token, 2)
        with pytest.raises(FailedPreconditionError):
            await lock_client.acquire(name, session, wait=1)
        [holder] = (await lock_client.describe(name)).holders
        assert (holder.token, holder.holds) == (first.token, 2)
        assert await lock_client.release(again)
        [holder] = (await lock_client.describe(name)).holders
        assert holder.holds == 1
        assert await lock_client.release(first)
        assert not (await lock_client.describe(name)).holders
        assert not await lock_client.release(first)
    finally:
        await session.close()
