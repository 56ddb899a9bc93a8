import tessera.client.ratelimit
import tessera.limiters
import tessera.ratelimit


def test_ratelimit_service_exports_are_pinned() -> None:
    assert tessera.ratelimit.__all__ == [
        "CONFIG_PREFIX",
        "DEFAULT_ALGORITHM",
        "ENVOY_SERVICE",
        "RATE_LIMITER_SERVICE",
        "UNIT_SECONDS",
        "AppliedDomain",
        "BreakerStatus",
        "BreakerStore",
        "CircuitBreakerRule",
        "ConfigStore",
        "Decider",
        "DescriptorRequest",
        "DescriptorRule",
        "DomainConfig",
        "EnvoyRateLimitServicer",
        "Finding",
        "Match",
        "QuotaVerdict",
        "RateLimitRule",
        "RateLimitService",
        "RateLimitSettings",
        "RateLimiterServicer",
        "RuleBook",
        "RuleUsage",
        "UsageRecorder",
        "Verdict",
        "config_key",
        "installed_limiters",
        "load_directory",
        "match",
        "parse_domain",
        "rate_limit_service",
        "read_usage",
    ]


def test_ratelimit_sdk_and_limiters_exports_are_pinned() -> None:
    assert tessera.client.ratelimit.__all__ == [
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
    assert tessera.limiters.__all__ == [
        "Concurrency",
        "Evaluation",
        "FixedWindow",
        "Gcra",
        "LeakyBucket",
        "LimitEvaluator",
        "SlidingWindow",
        "TokenBucket",
    ]
    for module in (tessera.ratelimit, tessera.client.ratelimit, tessera.limiters):
        assert all(hasattr(module, name) for name in module.__all__)
