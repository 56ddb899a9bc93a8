from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING, Self

import structlog

from tessera.core._errors import BackendError, FailedPreconditionError
from tessera.core.etcd._retry import NO_RETRY

if TYPE_CHECKING:
    from tessera.core.etcd._client import EtcdClient

# After a failed keep-alive, try again this often (at most) until the lease's TTL runs out.
_RETRY_INTERVAL_S = 0.5


class KeptLease:
    """An etcd lease kept alive in the background for as long as the `async with` block runs.

    On entry the lease is granted; a background task then sends a keep-alive every third of the
    TTL, and more often after a failure. The lease is declared lost, and `lost` is set, when etcd
    answers that the lease no longer exists (it expired, was revoked, or etcd lost its state), or
    when no keep-alive succeeded before the TTL etcd last granted ran out (etcd unreachable or
    frozen). A lost lease is never re-granted behind the caller's back: keys attached to it are,
    or soon will be, deleted, so the owner must stop acting on them and build its state again on
    a new lease. On exit the task stops and, unless lost, the lease is revoked; a failed revoke is
    logged and left to expire.

    Concurrency: use from one event loop; `lost` may be awaited by any number of tasks.

    Args:
        etcd: The client to grant and refresh the lease through.
        ttl_s: Requested time to live in seconds; etcd raises values below its minimum.

    Attributes:
        lost: Set once the lease is lost; never cleared.

    Example::

        async with etcd.keep_lease(10) as lease:
            await etcd.put(key, value, lease=lease.id)
            await lease.lost.wait()  # or race it against the work the lease guards

    """

    def __init__(self, etcd: EtcdClient, ttl_s: int) -> None:
        self._etcd = etcd
        self._requested_ttl_s = ttl_s
        self._id: int | None = None
        self._ttl_s = ttl_s
        self._task: asyncio.Task[None] | None = None
        self.lost = asyncio.Event()

    @property
    def id(self) -> int:
        """The lease ID, to attach keys with `EtcdClient.put(..., lease=id)`.

        Raises:
            FailedPreconditionError: The lease has not been granted yet.

        """
        if self._id is None:
            raise FailedPreconditionError("the lease is granted on entering `async with`")
        return self._id

    @property
    def ttl_s(self) -> int:
        """The TTL etcd granted, in seconds."""
        return self._ttl_s

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        # The TTL counts from when etcd granted the lease, which is after the request left.
        requested_at = loop.time()
        self._id, self._ttl_s = await self._etcd.grant_lease(self._requested_ttl_s)
        self._task = asyncio.create_task(
            self._keep_alive(requested_at + self._ttl_s), name=f"etcd-lease-{self._id:x}"
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._id is not None and not self.lost.is_set():
            try:
                await self._etcd.revoke_lease(self._id)
            except BackendError as error:
                structlog.get_logger(__name__).warning(
                    "etcd_lease_revoke_failed", lease=f"{self._id:x}", error=error.message
                )

    async def _keep_alive(self, expires_at: float) -> None:
        try:
            await self._refresh_until_lost(expires_at)
        except Exception as error:
            # A keep-alive that stopped for an unforeseen reason no longer protects the lease.
            self._declare_lost(f"the keep-alive task failed: {error!r}")
            raise

    async def _refresh_until_lost(self, expires_at: float) -> None:
        loop = asyncio.get_running_loop()
        interval = self._ttl_s / 3
        sleep = interval
        while True:
            await asyncio.sleep(sleep)
            sent_at = loop.time()
            budget = expires_at - sent_at
            if budget <= 0:
                self._declare_lost("no keep-alive succeeded within the TTL")
                return
            try:
                async with asyncio.timeout(budget):
                    ttl_s = await self._etcd.refresh_lease(self.id, retry=NO_RETRY)
            except TimeoutError:
                self._declare_lost("no keep-alive succeeded within the TTL")
                return
            except BackendError as error:
                if not error.retryable:
                    self._declare_lost(error.message)
                    return
                structlog.get_logger(__name__).info(
                    "etcd_lease_keepalive_failed", lease=f"{self.id:x}", error=error.message
                )
                sleep = min(interval, _RETRY_INTERVAL_S, max(expires_at - loop.time(), 0.0))
                continue
            if ttl_s <= 0:
                self._declare_lost("etcd no longer knows the lease (expired or revoked)")
                return
            expires_at = sent_at + ttl_s
            sleep = interval

    def _declare_lost(self, reason: str) -> None:
        structlog.get_logger(__name__).warning(
            "etcd_lease_lost", lease=f"{self.id:x}", ttl_s=self._ttl_s, reason=reason
        )
        self.lost.set()
