"""The rate-limit service: Envoy's rate-limit API and `tessera.ratelimit.v1` on one server.

Configuration is YAML compatible with envoyproxy/ratelimit, plus extensions (an `algorithm` per
rule, `burst` for buckets, calendar-aligned windows, `failure_mode` and `shadow_mode` per
domain, `allow` and `deny` lists, a `circuit_breaker` and an `adaptive` limit per descriptor),
loaded from a directory at start-up and from etcd under `/tessera/ratelimit/config/domains/`,
applied through a watch without restart. Algorithms are `tessera.limiters` plugins evaluated in
one Redis round trip per request. See docs/ratelimit.md.
"""

from tessera.ratelimit._audit import Finding
from tessera.ratelimit._breaker import BreakerStatus, BreakerStore
from tessera.ratelimit._config import (
    DEFAULT_ALGORITHM,
    UNIT_SECONDS,
    CircuitBreakerRule,
    DescriptorRule,
    DomainConfig,
    RateLimitRule,
    parse_domain,
)
from tessera.ratelimit._config_store import CONFIG_PREFIX, ConfigStore, config_key
from tessera.ratelimit._decider import Decider, DescriptorRequest, QuotaVerdict, Verdict
from tessera.ratelimit._envoy_servicer import ENVOY_SERVICE, EnvoyRateLimitServicer
from tessera.ratelimit._limiter_servicer import RATE_LIMITER_SERVICE, RateLimiterServicer
from tessera.ratelimit._match import Match, match
from tessera.ratelimit._rulebook import AppliedDomain, RuleBook, load_directory
from tessera.ratelimit._service import RateLimitService, installed_limiters, rate_limit_service
from tessera.ratelimit._settings import RateLimitSettings
from tessera.ratelimit._usage import RuleUsage, UsageRecorder, read_usage

__all__ = [
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
