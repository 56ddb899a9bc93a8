from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, ParamSpec, TypeVar, overload

from tessera.client.ratelimit._client import CheckResult, DescriptorLike, RateLimiter
from tessera.client.ratelimit._sync import SyncRateLimiter
from tessera.core import ResourceExhaustedError

P = ParamSpec("P")
R = TypeVar("R")

#: Descriptors, or a function of the decorated call's arguments that returns them.
Descriptors = Sequence[DescriptorLike] | Callable[..., Sequence[DescriptorLike]]


class RateLimitedError(ResourceExhaustedError):
    """The service denied the call: over a limit, a deny list, or an open circuit breaker.

    Attributes:
        result: The service's answer, with every descriptor's decision and reason.
        retry_after_s: The longest `retry_after_s` of the denied decisions.

    """

    def __init__(self, result: CheckResult) -> None:
        denied = [d for d in result.decisions if not d.allowed]
        reasons = ", ".join(sorted({f"{d.rule or 'no rule'}: {d.reason}" for d in denied}))
        super().__init__(
            f"rate limited ({reasons})",
            retry_after_s=max((d.retry_after_s for d in denied), default=0.0),
        )
        self.result = result


def _plan(
    result: CheckResult, descriptors: Sequence[DescriptorLike]
) -> tuple[float, list[DescriptorLike], list[tuple[DescriptorLike, str]]]:
    # What a guarded call owes the service: the pacing delay before it, the targets whose
    # breaker or adaptive limit wants its outcome, the concurrency leases to give back (also
    # those the admitted descriptors of a denied call took).
    pairs = list(zip(descriptors, result.decisions, strict=True))
    delay = max((d.delay_s for d in result.decisions), default=0.0)
    report = [s for s, d in pairs if d.circuit_breaker is not None or d.adaptive is not None]
    leases = [(s, d.lease) for s, d in pairs if d.lease]
    return delay, report, leases


@asynccontextmanager
async def protect(
    limiter: RateLimiter,
    domain: str,
    descriptors: Sequence[DescriptorLike],
    *,
    hits: int = 1,
    failures: tuple[type[BaseException], ...] = (Exception,),
) -> AsyncIterator[CheckResult]:
    """Guard one call: check, wait the pacing delay, run it, report its outcome, release leases.

    This is the SDK's circuit-breaker context manager: the body runs only if every descriptor is
    admitted (a breaker that is open denies); when it ends, its outcome (failed iff it raised one
    of `failures`) and latency go to every descriptor whose rule has a circuit breaker or an
    adaptive limit, and the concurrency leases it holds are released, whatever happened.

    Raises:
        RateLimitedError: A descriptor was denied; the body did not run.
        ValidationError, NotFoundError, UnavailableError: As `RateLimiter.check`.

    """
    result = await limiter.check(domain, descriptors, hits=hits)
    delay, report, leases = _plan(result, descriptors)
    try:
        if not result:
            raise RateLimitedError(result)
        if delay > 0:
            await asyncio.sleep(delay)
        start = time.monotonic()
        failed = False
        try:
            yield result
        except failures:
            failed = True
            raise
        finally:
            latency = time.monotonic() - start
            for target in report:
                await limiter.report_outcome(domain, target, success=not failed, latency_s=latency)
    finally:
        for descriptor, lease in leases:
            await limiter.release(domain, descriptor, lease)


@contextmanager
def protect_sync(
    limiter: SyncRateLimiter,
    domain: str,
    descriptors: Sequence[DescriptorLike],
    *,
    hits: int = 1,
    failures: tuple[type[BaseException], ...] = (Exception,),
) -> Iterator[CheckResult]:
    """Blocking `protect` on a `SyncRateLimiter` (same contract, same errors)."""
    result = limiter.check(domain, descriptors, hits=hits)
    delay, report, leases = _plan(result, descriptors)
    try:
        if not result:
            raise RateLimitedError(result)
        if delay > 0:
            time.sleep(delay)
        start = time.monotonic()
        failed = False
        try:
            yield result
        except failures:
            failed = True
            raise
        finally:
            latency = time.monotonic() - start
            for target in report:
                limiter.report_outcome(domain, target, success=not failed, latency_s=latency)
    finally:
        for descriptor, lease in leases:
            limiter.release(domain, descriptor, lease)


@overload
def rate_limited(
    limiter: RateLimiter,
    domain: str,
    descriptors: Descriptors,
    *,
    hits: int = 1,
    failures: tuple[type[BaseException], ...] = (Exception,),
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]: ...


@overload
def rate_limited(
    limiter: SyncRateLimiter,
    domain: str,
    descriptors: Descriptors,
    *,
    hits: int = 1,
    failures: tuple[type[BaseException], ...] = (Exception,),
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def rate_limited(
    limiter: RateLimiter | SyncRateLimiter,
    domain: str,
    descriptors: Descriptors,
    *,
    hits: int = 1,
    failures: tuple[type[BaseException], ...] = (Exception,),
) -> Callable[[Callable[P, Any]], Callable[P, Any]]:
    """Decorate a function so that each call runs inside `protect` (or `protect_sync`).

    With a `RateLimiter` the function must be a coroutine function; with a `SyncRateLimiter` a
    plain one. `descriptors` is a list, or a function of the call's arguments returning one
    (`lambda user, **_: [{"user": user}]`).

    Example::

        @rate_limited(limiter, "api", lambda user_id: [{"user": user_id}])
        async def fetch(user_id: str) -> bytes: ...

    Raises:
        TypeError: At decoration, when the function's kind does not match the limiter's.
        RateLimitedError: From the decorated function, when a descriptor is denied.

    """

    def resolve(*args: Any, **kwargs: Any) -> Sequence[DescriptorLike]:
        return list(descriptors(*args, **kwargs)) if callable(descriptors) else descriptors

    def decorate(function: Callable[P, Any]) -> Callable[P, Any]:
        if isinstance(limiter, RateLimiter):
            if not inspect.iscoroutinefunction(function):
                raise TypeError("rate_limited with a RateLimiter decorates coroutine functions")
            async_limiter = limiter

            @functools.wraps(function)
            async def guarded(*args: P.args, **kwargs: P.kwargs) -> Any:
                found = resolve(*args, **kwargs)
                async with protect(async_limiter, domain, found, hits=hits, failures=failures):
                    return await function(*args, **kwargs)

            return guarded
        if inspect.iscoroutinefunction(function):
            raise TypeError("rate_limited with a SyncRateLimiter decorates plain functions")
        sync_limiter = limiter

        @functools.wraps(function)
        def guarded_sync(*args: P.args, **kwargs: P.kwargs) -> Any:
            found = resolve(*args, **kwargs)
            with protect_sync(sync_limiter, domain, found, hits=hits, failures=failures):
                return function(*args, **kwargs)

        return guarded_sync

    return decorate
