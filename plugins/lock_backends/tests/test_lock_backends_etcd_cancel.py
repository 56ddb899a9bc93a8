"""An acquisition cancelled while its enqueue transaction is on the wire leaves nothing behind."""

from __future__ import annotations

import asyncio
import uuid

from tessera.core import TesseraSettings
from tessera.core.embedded import EtcdServer
from tessera.core.plugins import LockMode
from tessera.lock_backends import EtcdLockBackend
from tessera.testing import TcpProxy


async def test_etcd_acquire_cancelled_in_flight_withdraws_its_entry(
    etcd_server: EtcdServer,
) -> None:
    name = f"cancel-in-flight/{uuid.uuid4().hex}"
    host, _, port = etcd_server.endpoint.rpartition(":")
    observer = EtcdLockBackend(TesseraSettings(etcd_endpoints=[etcd_server.endpoint]))
    async with TcpProxy(host, int(port)) as proxy:
        slow = EtcdLockBackend(TesseraSettings(etcd_endpoints=[proxy.address]))
        try:
            session = await slow.open_session(30)
            proxy.delay(0.3)
            acquiring = asyncio.create_task(
                slow.acquire(name, session.id, LockMode.EXCLUSIVE, wait_s=10)
            )
            await asyncio.sleep(0.1)  # the put is held by the proxy
            acquiring.cancel()
            await asyncio.gather(acquiring, return_exceptions=True)
            assert acquiring.cancelled()
            # The put lands after the cancellation; the backend then deletes its entry.
            async with asyncio.timeout(5):
                seen = False
                while True:
                    state = await observer.describe(name)
                    seen = seen or bool(state.holders)
                    if seen and not state.holders and not state.waiters:
                        break
                    await asyncio.sleep(0.02)
            other = await observer.open_session(30)
            grant = await observer.acquire(name, other.id, LockMode.EXCLUSIVE, wait_s=0)
            assert grant is not None
        finally:
            await slow.close()
            await observer.close()
