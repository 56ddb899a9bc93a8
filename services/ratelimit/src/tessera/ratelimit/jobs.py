"""Background jobs of the rate-limit service (queue `ratelimit`, entry point `tessera.jobs`).

Every replica adds its decision counts to per-minute Redis hashes (`UsageRecorder`); beat
schedules two tasks that read them:

- `tessera.ratelimit.aggregate_usage` (every minute): sums the last hour per domain and rule
  (admitted, denied, shadow-denied, failure policy) and writes the report as JSON to
  `USAGE_REPORT_KEY`; then publishes each domain's usage feed (decision rates per rule over
  the last `feed_window_s`, `FEED_PREFIX`), which adaptive limits read so as not to raise a
  limit the traffic does not use.
- `tessera.ratelimit.audit_config` (every hour): compares the directory
  (`TESSERA_RATELIMIT_CONFIG_DIR` of the worker) with etcd (drift, domains in one place only,
  invalid stored domains) and the configuration with the last day's usage (rules never hit,
  shadow-mode rules that would have denied); writes the findings as JSON to
  `AUDIT_REPORT_KEY`.

Both are idempotent: a run overwrites the previous report.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tessera.core import TesseraSettings
from tessera.core.etcd import EtcdClient
from tessera.core.jobs import JobContext
from tessera.core.redis import connect_redis, redis_errors
from tessera.ratelimit._audit import Finding, audit
from tessera.ratelimit._config_store import ConfigStore
from tessera.ratelimit._rulebook import load_directory
from tessera.ratelimit._service import installed_limiters
from tessera.ratelimit._settings import RateLimitSettings
from tessera.ratelimit._usage import RuleUsage, read_usage
from tessera.ratelimit._usage_feed import (
    DEFAULT_FEED_WINDOW_S,
    FEED_PREFIX,
    FEED_TTL_S,
    RuleRates,
    publish_usage_feed,
    usage_feed_key,
)

__all__ = [
    "AUDIT_REPORT_KEY",
    "DEFAULT_FEED_WINDOW_S",
    "FEED_PREFIX",
    "FEED_TTL_S",
    "REPORT_TTL_S",
    "USAGE_REPORT_KEY",
    "RuleRates",
    "aggregate_usage_once",
    "audit_config_once",
    "publish_usage_feed",
    "register",
    "run_audit",
    "usage_feed_key",
]

#: Redis key of the latest usage report (JSON): `{"at", "since_s", "rules": [RuleUsage...]}`.
USAGE_REPORT_KEY = "tessera:ratelimit:reports:usage"
#: Redis key of the latest audit (JSON): `{"at", "since_s", "findings": [Finding...]}`.
AUDIT_REPORT_KEY = "tessera:ratelimit:reports:audit"
#: A report older than this is gone: no beat or no worker ran it since.
REPORT_TTL_S = 2 * 3600


async def _write(redis: Redis, key: str, document: dict[str, Any]) -> None:
    with redis_errors("rate limit report"):
        await redis.set(key, json.dumps(document), ex=REPORT_TTL_S)


async def _store(settings: TesseraSettings, key: str, document: dict[str, Any]) -> None:
    redis = connect_redis(settings)
    try:
        await _write(redis, key, document)
    finally:
        await redis.aclose()


async def _usage(settings: TesseraSettings, since_s: float) -> list[RuleUsage]:
    redis = connect_redis(settings)
    try:
        return await read_usage(redis, since_s=since_s)
    finally:
        await redis.aclose()


async def aggregate_usage_once(
    settings: TesseraSettings,
    *,
    since_s: float = 3600.0,
    feed_window_s: float = DEFAULT_FEED_WINDOW_S,
) -> dict[str, int]:
    """Sum the usage of the last `since_s` seconds per domain and rule into the usage report.

    Then, unless `feed_window_s` is 0, replace the usage feed of every domain of the report
    with its rules' decision rates over the last `feed_window_s` (`publish_usage_feed`): a
    rule of the report without decisions in that window is published as idle.

    Returns:
        `rules` reported and the `decisions` they made.

    Raises:
        BackendError: Redis failed.

    """
    redis = connect_redis(settings)
    try:
        usage = await read_usage(redis, since_s=since_s)
        document = {"at": time.time(), "since_s": since_s, "rules": [asdict(row) for row in usage]}
        await _write(redis, USAGE_REPORT_KEY, document)
        if feed_window_s > 0:
            domains = {row.domain for row in usage}
            await publish_usage_feed(redis, window_s=feed_window_s, domains=domains)
    finally:
        await redis.aclose()
    return {"rules": len(usage), "decisions": sum(row.total for row in usage)}


async def run_audit(
    settings: TesseraSettings, config_dir: Path | None, *, since_s: float = 86_400.0
) -> list[Finding]:
    """Audit the configuration of the directory and etcd against the last `since_s` of usage.

    Raises:
        ConfigError: The directory holds invalid files.
        BackendError: etcd or Redis failed.

    """
    limiters = installed_limiters()
    files = {} if config_dir is None else load_directory(config_dir, algorithms=limiters)
    async with EtcdClient.from_settings(settings) as etcd:
        stored, invalid = await ConfigStore(etcd, algorithms=limiters).stored()
    usage = await _usage(settings, since_s)
    return audit(files, stored, invalid, usage, period=f"the last {since_s / 3600:g} h")


async def audit_config_once(
    settings: TesseraSettings, config_dir: Path | None, *, since_s: float = 86_400.0
) -> dict[str, int]:
    """Run `run_audit` and write its findings to the audit report.

    Returns:
        The number of findings of each kind.

    Raises:
        ConfigError: The directory holds invalid files.
        BackendError: etcd or Redis failed.

    """
    findings = await run_audit(settings, config_dir, since_s=since_s)
    document = {
        "at": time.time(),
        "since_s": since_s,
        "findings": [asdict(finding) for finding in findings],
    }
    await _store(settings, AUDIT_REPORT_KEY, document)
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.kind] = counts.get(finding.kind, 0) + 1
    return counts


def register(context: JobContext) -> None:
    """Define `tessera.ratelimit.aggregate_usage` and `.audit_config` and schedule them."""
    settings = context.settings
    # The worker's own environment names the directory the replicas load.
    config_dir = RateLimitSettings.from_env().ratelimit_config_dir
    options: dict[str, Any] = {"acks_late": True, "reject_on_worker_lost": True}

    @context.task("aggregate_usage", **options)
    def aggregate_usage(
        since_s: float = 3600.0, feed_window_s: float = DEFAULT_FEED_WINDOW_S
    ) -> dict[str, int]:
        return asyncio.run(
            aggregate_usage_once(settings, since_s=since_s, feed_window_s=feed_window_s)
        )

    @context.task("audit_config", **options)
    def audit_config(since_s: float = 86_400.0) -> dict[str, int]:
        return asyncio.run(audit_config_once(settings, config_dir, since_s=since_s))

    context.schedule("ratelimit.aggregate_usage", aggregate_usage.name, 60.0)
    context.schedule("ratelimit.audit_config", audit_config.name, 3600.0)
