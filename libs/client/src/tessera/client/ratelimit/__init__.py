"""Client of the rate-limit service (`tessera.ratelimit.v1.RateLimiter`).

- `RateLimiter` (async): `await limiter.check("api", [{"user": "42"}])` counts and decides every
  descriptor in one call; `peek`, `reset` and `explain` alongside; `release` gives back a
  concurrency lease; `report_outcome` feeds circuit breakers and adaptive limits. A rule's
  adaptive limit (`AdaptiveLimitState`) carries the aggregated usage its last step saw
  (`AdaptiveUsage`: decision rates, utilisation, whether an increase was held).
- `SyncRateLimiter`: the same calls, blocking, for code without an event loop.
- `protect` / `protect_sync`: the circuit-breaker context manager: check, pace, run the body,
  report its outcome to breakers and adaptive limits, release concurrency leases.
- `RateLimiter.lease` takes a batch of tokens (a `Grant`) of a rule of any algorithm but
  `concurrency`, to spend without asking; `QuotaLease` spends them locally (`try_acquire`,
  >= 1,000,000 decisions/s), renews ahead of exhaustion and gives unused tokens back on close;
  `SyncRateLimiter.quota` opens a `SyncQuotaLease` that threads share.
- `rate_limited`: the same as a decorator, for coroutine functions (with a `RateLimiter`) or
  plain ones (with a `SyncRateLimiter`); denials raise `RateLimitedError`.

A `CheckResult` is truthy when every descriptor is within its limit.
"""

from tessera.client.ratelimit._client import (
    AdaptiveLimitState,
    AdaptiveUsage,
    CheckResult,
    CircuitBreakerState,
    Decision,
    DescriptorLike,
    Explanation,
    Grant,
    OutcomeResult,
    RateLimiter,
)
from tessera.client.ratelimit._guard import (
    Descriptors,
    RateLimitedError,
    protect,
    protect_sync,
    rate_limited,
)
from tessera.client.ratelimit._quota import QuotaLease, SyncQuotaLease
from tessera.client.ratelimit._sync import SyncRateLimiter

__all__ = [
    "AdaptiveLimitState",
    "AdaptiveUsage",
    "CheckResult",
    "CircuitBreakerState",
    "Decision",
    "DescriptorLike",
    "Descriptors",
    "Explanation",
    "Grant",
    "OutcomeResult",
    "QuotaLease",
    "RateLimitedError",
    "RateLimiter",
    "SyncQuotaLease",
    "SyncRateLimiter",
    "protect",
    "protect_sync",
    "rate_limited",
]
