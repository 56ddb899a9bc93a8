"""Usage counting, the usage report and the configuration audit on real Redis, etcd and Celery."""

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tessera.client.cli._app import app
from tessera.client.ratelimit import RateLimiter
from tessera.core import BackendError, TesseraSettings
from tessera.core.embedded import EtcdServer, RedisServer
from tessera.core.etcd import EtcdClient
from tessera.core.jobs import WorkerSettings, create_celery_app
from tessera.core.redis import connect_redis
from tessera.ratelimit import ConfigStore, RuleUsage, UsageRecorder, installed_limiters, read_usage
from tessera.ratelimit.jobs import (
    AUDIT_REPORT_KEY,
    USAGE_REPORT_KEY,
    aggregate_usage_once,
    audit_config_once,
)
from tessera.testing import JobsProcess, ServerFactory

WORKER_TIMEOUT_S = 90.0


def unique() -> str:
    return uuid.uuid4().hex[:10]


async def _usage_until(redis_url: str, expected: list[RuleUsage]) -> list[RuleUsage]:
    client = connect_redis(redis_url)
    try:
        rows: list[RuleUsage] = []
        for _ in range(100):  # flushes every 0.1 s
            rows = await read_usage(client, since_s=600)
            if rows == expected:
                break
            await asyncio.sleep(0.05)
        return rows
    finally:
        await client.aclose()


async def test_ratelimit_usage_counts_decisions_per_rule_and_the_report_sums_them(
    start_ratelimit, redis_factory: ServerFactory[RedisServer], etcd_server: EtcdServer
) -> None:
    redis = await asyncio.to_thread(redis_factory)
    async with (
        start_ratelimit(redis_url=redis.url, ratelimit_usage_flush_s=0.1) as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        fixed, shadow = {"fixed": unique()}, {"shadow": unique()}
        for _ in range(3):
            assert await limiter.check("quotas", [fixed, shadow])  # shadow: 2 an hour
        assert not await limiter.check("quotas", [{"vip": "blocked"}, {"nothing": "x"}])
        await limiter.peek("quotas", [fixed])  # peeks count nothing
        expected = [
            RuleUsage("quotas", "descriptors[0]", admitted=3),
            RuleUsage("quotas", "descriptors[5]", denied=1),
            RuleUsage("quotas", "descriptors[6]", admitted=2, shadow_denied=1),
        ]
        assert await _usage_until(redis.url, expected) == expected

    settings = TesseraSettings(redis_url=redis.url, etcd_endpoints=[etcd_server.endpoint])
    assert await aggregate_usage_once(settings) == {"rules": 3, "decisions": 7}
    client = connect_redis(redis.url)
    try:
        report = json.loads(await client.get(USAGE_REPORT_KEY))
    finally:
        await client.aclose()
    assert report["since_s"] == 3600
    assert report["rules"][2] == {
        "domain": "quotas",
        "rule": "descriptors[6]",
        "admitted": 2,
        "denied": 0,
        "shadow_denied": 1,
        "unavailable": 0,
    }


async def test_ratelimit_usage_kept_while_redis_is_down_is_flushed_later(
    redis_factory: ServerFactory[RedisServer],
) -> None:
    redis = await asyncio.to_thread(redis_factory)
    client = connect_redis(redis.url, timeout_s=0.5, retries=0)
    try:
        recorder = UsageRecorder(client, 60)
        recorder.record("d", [("r", False, "within limit"), ("", False, "no rule")])
        await asyncio.to_thread(redis.kill)
        with pytest.raises(BackendError):
            await recorder.flush()
        await asyncio.to_thread(redis.restart)
        # The counts of the failed flush went out with the next one.
        recorder.record("d", [("r", True, "over limit")])
        assert await recorder.flush() == 2
        assert await read_usage(client, since_s=600) == [RuleUsage("d", "r", 1, 1)]
    finally:
        await client.aclose()


def _domain(name: str, limit: int) -> str:
    return (
        f"domain: {name}\ndescriptors:\n"
        f"  - key: a\n    shadow_mode: true\n    rate_limit: {{unit: hour, requests_per_unit: 1}}\n"
        f"  - key: b\n    rate_limit: {{unit: hour, requests_per_unit: {limit}}}\n"
    )


async def test_ratelimit_audit_finds_drift_unused_rules_and_shadow_denials(
    tmp_path: Path, etcd_server: EtcdServer, redis_factory: ServerFactory[RedisServer]
) -> None:
    redis = await asyncio.to_thread(redis_factory)
    drifted, file_only, etcd_only = f"drift-{unique()}", f"file-{unique()}", f"etcd-{unique()}"
    (tmp_path / "drift.yaml").write_text(_domain(drifted, 5))
    (tmp_path / "file.yaml").write_text(_domain(file_only, 5))
    async with EtcdClient.from_settings(
        TesseraSettings(etcd_endpoints=[etcd_server.endpoint])
    ) as etcd:
        store = ConfigStore(etcd, algorithms=installed_limiters())
        await store.apply(_domain(drifted, 6))
        await store.apply(_domain(etcd_only, 5))
    client = connect_redis(redis.url)
    recorder = UsageRecorder(client, 60)
    shadow_denials = [("descriptors[0]", False, "shadow mode (over limit)")] * 4
    recorder.record(drifted, [("descriptors[0]", False, "within limit"), *shadow_denials])
    recorder.record(file_only, [("descriptors[0]", False, "within limit")])
    recorder.record(file_only, [("descriptors[1]", True, "over limit")])
    await recorder.flush()

    settings = TesseraSettings(redis_url=redis.url, etcd_endpoints=[etcd_server.endpoint])
    counts = await audit_config_once(settings, tmp_path, since_s=3600)
    report = json.loads(await client.get(AUDIT_REPORT_KEY))
    await client.aclose()
    mine = {
        (f["kind"], f["domain"], f["rule"], f["count"])
        for f in report["findings"]
        if f["domain"] in (drifted, file_only, etcd_only)
    }
    assert mine == {
        ("drift", drifted, "", 0),
        ("file_only", file_only, "", 0),
        ("etcd_only", etcd_only, "", 0),
        ("never_hit", drifted, "descriptors[1]", 0),
        ("never_hit", etcd_only, "descriptors[0]", 0),
        ("never_hit", etcd_only, "descriptors[1]", 0),
        ("shadow_would_deny", drifted, "descriptors[0]", 4),
    }
    assert counts["drift"] >= 1
    assert counts["shadow_would_deny"] == 1


@pytest.fixture
def ratelimit_worker(
    etcd_server: EtcdServer, redis_server: RedisServer, jobs_process: Callable[..., JobsProcess]
) -> Path:
    """A real worker serving queue `ratelimit`, as `tessera dev up` runs it; its log's path."""
    env = {"TESSERA_REDIS_URL": redis_server.url, "TESSERA_ETCD_ENDPOINTS": etcd_server.endpoint}
    return jobs_process("worker", "-Q", "ratelimit", "-c", "1", env=env).log_path


async def test_ratelimit_jobs_run_on_a_real_worker(
    ratelimit_worker: Path, redis_server: RedisServer
) -> None:
    celery = create_celery_app(WorkerSettings(redis_url=redis_server.url), queues=())
    try:
        # No usage feed (window 0) on the session's shared Redis: adaptive limits of other
        # tests must not see one; test_ratelimit_adaptive_feed_jobs.py covers the feed.
        result = celery.send_task("tessera.ratelimit.aggregate_usage", args=[600.0, 0.0])
        counts = await asyncio.to_thread(result.get, timeout=WORKER_TIMEOUT_S)
        assert set(counts) == {"rules", "decisions"}, (counts, ratelimit_worker)
        audit = celery.send_task("tessera.ratelimit.audit_config", args=[600.0])
        kinds = await asyncio.to_thread(audit.get, timeout=WORKER_TIMEOUT_S)
        assert isinstance(kinds, dict), (kinds, ratelimit_worker)
    finally:
        celery.close()
    client = connect_redis(redis_server.url)
    try:
        assert json.loads(await client.get(USAGE_REPORT_KEY))["since_s"] == 600.0
        assert json.loads(await client.get(AUDIT_REPORT_KEY))["since_s"] == 600.0
    finally:
        await client.aclose()


async def test_ratelimit_cli_release_report_outcome_usage_and_audit(
    start_ratelimit,
    redis_factory: ServerFactory[RedisServer],
    etcd_server: EtcdServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redis = await asyncio.to_thread(redis_factory)
    monkeypatch.setenv("TESSERA_REDIS_URL", redis.url)
    monkeypatch.setenv("TESSERA_ETCD_ENDPOINTS", etcd_server.endpoint)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args))

    async with (
        start_ratelimit(redis_url=redis.url, ratelimit_usage_flush_s=0.1) as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        target = ["--target", running.server.address]
        fixed = f"fixed={unique()}"
        grant = await limiter.lease("quotas", [("fixed", fixed[6:])], 10)
        given = await asyncio.to_thread(
            invoke, "ratelimit", "release", "quotas", fixed, grant.lease, "--unused", "4", *target
        )
        assert given.exit_code == 0, given.output
        assert "released" in given.output
        again = await asyncio.to_thread(
            invoke, "ratelimit", "release", "quotas", "job=x", "1.1", *target
        )
        assert again.exit_code != 0
        outcome = await asyncio.to_thread(
            invoke,
            "ratelimit",
            "report-outcome",
            "quotas",
            f"breaker={unique()}",
            "--failure",
            "--latency",
            "0.2",
            *target,
        )
        assert outcome.exit_code == 0, outcome.output
        assert "circuit breaker (error_count): closed, 1 bad of 1 calls" in outcome.output
        assert await limiter.check("quotas", [{"fixed": unique()}])
        expected = [RuleUsage("quotas", "descriptors[0]", admitted=1)]
        assert await _usage_until(redis.url, expected) == expected

    usage = await asyncio.to_thread(invoke, "ratelimit", "usage", "--json")
    assert usage.exit_code == 0, usage.output
    assert json.loads(usage.stdout) == [
        {
            "domain": "quotas",
            "rule": "descriptors[0]",
            "admitted": 1,
            "denied": 0,
            "shadow_denied": 0,
            "unavailable": 0,
        }
    ]
    table = await asyncio.to_thread(invoke, "ratelimit", "usage")
    assert "descriptors[0]" in table.stdout
    name = f"cli-audit-{unique()}"
    (tmp_path / "a.yaml").write_text(_domain(name, 5))
    audited = await asyncio.to_thread(
        invoke, "ratelimit", "audit", "--config-dir", str(tmp_path), "--json"
    )
    assert audited.exit_code == 1  # the file's domain is not in etcd
    findings = [f for f in json.loads(audited.stdout) if f["domain"] == name]
    assert {f["kind"] for f in findings} == {"file_only", "never_hit"}
