from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import structlog

from tessera.core import BackendError
from tessera.core.etcd import EtcdClient, KeptLease

_REGRANT_BACKOFF_S = 1.0


class ProcessLease:
    """The one etcd lease a registry process attaches its ephemeral instances to.

    When the lease is lost (etcd forgot it, or no keep-alive got through within its TTL), a new
    one is granted and `reattach` is called with its ID to write the owned instances again.

    Concurrency: one event loop.

    Args:
        etcd: The client to keep the lease through.
        ttl_s: The lease TTL; the grace within which a client may fail over to another replica.
        reattach: Called with each replacement lease ID.

    """

    def __init__(
        self, etcd: EtcdClient, ttl_s: int, reattach: Callable[[int], Awaitable[None]]
    ) -> None:
        self._etcd = etcd
        self._ttl_s = ttl_s
        self._reattach = reattach
        self._stack = AsyncExitStack()
        self._lease: KeptLease | None = None

    @property
    def id(self) -> int:
        """The current lease ID.

        Raises:
            UnavailableError: The lease is being replaced (retryable).

        """
        if self._lease is None or self._lease.lost.is_set():
            raise BackendError("the registry's etcd lease is being replaced", backend="etcd")
        return self._lease.id

    async def start(self) -> None:
        """Grant the first lease.

        Raises:
            BackendError: etcd failed.

        """
        self._lease = await self._stack.enter_async_context(self._etcd.keep_lease(self._ttl_s))

    async def run(self) -> None:
        """Replace the lease whenever it is lost; cancel to stop."""
        log = structlog.get_logger(__name__)
        while True:
            if self._lease is not None:
                await self._lease.lost.wait()
            await self._stack.aclose()
            try:
                self._lease = await self._stack.enter_async_context(
                    self._etcd.keep_lease(self._ttl_s)
                )
                log.warning("registry_lease_replaced", lease=f"{self._lease.id:x}")
                await self._reattach(self._lease.id)
            except BackendError as error:
                log.warning("registry_lease_regrant_failed", error=error.message)
                await asyncio.sleep(_REGRANT_BACKOFF_S)

    async def close(self) -> None:
        """Stop refreshing the lease without revoking it.

        The lease then expires after its TTL: that is the grace in which this process's clients
        reconnect to another replica, which adopts their instances, so a rolling restart loses
        no instance. Revoking would delete them all at once.
        """
        if self._lease is not None:
            # KeptLease revokes on exit unless the lease is lost; marking it lost is how to let
            # it run out instead.
            self._lease.lost.set()
        await self._stack.aclose()
