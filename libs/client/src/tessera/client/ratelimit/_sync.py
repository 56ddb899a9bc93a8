from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable
from types import TracebackType
from typing import Any, Self, TypeVar

from tessera.client.ratelimit._client import (
    CheckResult,
    DescriptorLike,
    Explanation,
    OutcomeResult,
    RateLimiter,
)

T = TypeVar("T")


class SyncRateLimiter:
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
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tessera-ratelimit-client", daemon=True
        )
        self._thread.start()
        self._client = self._run(self._connect(target, timeout_s))

    def close(self) -> None:
        """Close the client and stop its thread."""
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

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

    @staticmethod
    async def _connect(target: str, timeout_s: float) -> RateLimiter:
        # The channel must be created on the loop that will use it.
        return RateLimiter.connect(target, timeout_s=timeout_s)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()
