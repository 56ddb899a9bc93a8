from __future__ import annotations

from collections.abc import Iterable

from tessera.client._sync_facade import SyncFacade
from tessera.client.ratelimit._client import (
    CheckResult,
    DescriptorLike,
    Explanation,
    OutcomeResult,
    RateLimiter,
)


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

    def release(self, domain: str, descriptor: DescriptorLike, lease: str) -> bool:
        """See `RateLimiter.release`."""
        return self._run(self._client.release(domain, descriptor, lease))

    def report_outcome(
        self, domain: str, target: DescriptorLike, *, success: bool, latency_s: float = 0.0
    ) -> OutcomeResult:
        """See `RateLimiter.report_outcome`."""
        return self._run(
            self._client.report_outcome(domain, target, success=success, latency_s=latency_s)
        )
