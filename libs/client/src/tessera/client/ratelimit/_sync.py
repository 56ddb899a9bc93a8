from __future__ import annotations

import asyncio
from collections.abc import Iterable

from tessera.client._sync_facade import SyncFacade
from tessera.client.ratelimit._client import (
    CheckResult,
    DescriptorLike,
    Explanation,
    Grant,
    OutcomeResult,
    RateLimiter,
)
from tessera.client.ratelimit._quota import SyncQuotaLease, _SharedQuota


class SyncRateLimiter(SyncFacade[RateLimiter]):
    """Blocking facade over `RateLimiter` for code without an event loop.

    The async client runs on an event loop in a daemon thread owned by this object. Thread-safe:
    any thread may call it.

    Args:
        target: The rate-limit service, `host:port`.
        timeout_s: Deadline of each call.

    Example::

        with SyncRateLimiter("127.0.0.1:50053") as limiter:
            if not limiter.check("api", [{"user": "42"}]):
                abort(429)

    """

    def __init__(self, target: str, *, timeout_s: float = 1.0) -> None:
        super().__init__(
            lambda: RateLimiter.connect(target, timeout_s=timeout_s),
            thread_name="tessera-ratelimit-client",
        )

    def check(
        self, domain: str, descriptors: Iterable[DescriptorLike], *, hits: int = 1
    ) -> CheckResult:
        """See `RateLimiter.check` (same arguments and errors)."""
        return self._run(self._client.check(domain, list(descriptors), hits=hits))

    def peek(self, domain: str, descriptors: Iterable[DescriptorLike]) -> CheckResult:
        """See `RateLimiter.peek`."""
        return self._run(self._client.peek(domain, list(descriptors)))

    def reset(self, domain: str, descriptors: Iterable[DescriptorLike]) -> int:
        """See `RateLimiter.reset`."""
        return self._run(self._client.reset(domain, list(descriptors)))

    def explain(self, domain: str, descriptor: DescriptorLike) -> Explanation:
        """See `RateLimiter.explain`."""
        return self._run(self._client.explain(domain, descriptor))

    def release(
        self, domain: str, descriptor: DescriptorLike, lease: str, *, unused: int = 0
    ) -> bool:
        """See `RateLimiter.release`."""
        return self._run(self._client.release(domain, descriptor, lease, unused=unused))

    def quota(
        self,
        domain: str,
        descriptor: DescriptorLike,
        *,
        batch: int = 1000,
        ttl_s: float = 1.0,
        renew_at: float = 0.25,
    ) -> SyncQuotaLease:
        """Open a `SyncQuotaLease` (arguments as `QuotaLease`'s) that threads share.

        Enter it to take the first grant; close it to give unused tokens back. The rule may be
        of any algorithm but `concurrency` (see `QuotaLease` for each one's overshoot); a rule
        that cannot be leased makes entering raise (see `QuotaLease` for its errors).

        Raises:
            ValidationError: `batch`, `ttl_s` or `renew_at` is out of range.

        """

        async def on_loop() -> _SharedQuota:
            # Its renewals run on this facade's loop, as the client's calls do.
            return _SharedQuota(
                asyncio.get_running_loop(),
                self._client,
                domain,
                descriptor,
                batch=batch,
                ttl_s=ttl_s,
                renew_at=renew_at,
            )

        return SyncQuotaLease(self._run(on_loop()), self._run)

    def lease(
        self, domain: str, descriptor: DescriptorLike, tokens: int, *, ttl_s: float = 1.0
    ) -> Grant:
        """See `RateLimiter.lease` (`Grant.sent_at` is on this process's monotonic clock)."""
        return self._run(self._client.lease(domain, descriptor, tokens, ttl_s=ttl_s))

    def report_outcome(
        self, domain: str, target: DescriptorLike, *, success: bool, latency_s: float = 0.0
    ) -> OutcomeResult:
        """See `RateLimiter.report_outcome`."""
        return self._run(
            self._client.report_outcome(domain, target, success=success, latency_s=latency_s)
        )
