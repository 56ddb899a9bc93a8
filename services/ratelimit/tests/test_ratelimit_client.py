import asyncio
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tessera.client.cli._app import app
from tessera.client.ratelimit import RateLimiter, SyncRateLimiter
from tessera.core import NotFoundError, ValidationError
from tessera.core.embedded import EtcdServer

CONFIGS = Path(__file__).with_name("configs")


async def test_ratelimit_client_check_peek_reset_explain(start_ratelimit) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        user = {"user": uuid.uuid4().hex}
        results = [await limiter.check("api", [user]) for _ in range(3)]
        assert [bool(r) for r in results] == [True, True, False]
        denied = results[-1].decisions[0]
        assert denied.reason == "over limit"
        assert denied.algorithm == "sliding_window"
        assert denied.retry_after_s > 0
        assert denied.period_s == 3600
        assert not await limiter.peek("api", [user])
        assert await limiter.reset("api", [user]) == 1
        assert await limiter.peek("api", [user])
        explanation = await limiter.explain("api", [("user", "x")])
        assert explanation.matched
        with pytest.raises(NotFoundError):
            await limiter.check("missing", [user])
        with pytest.raises(ValidationError) as raised:
            await limiter.check("api", [{}])
        assert [v.field for v in raised.value.violations] == ["descriptors[0].entries"]


async def test_ratelimit_client_sync_facade(start_ratelimit) -> None:
    async with start_ratelimit() as (running, _):

        def use() -> list[bool]:
            with SyncRateLimiter(running.server.address) as limiter:
                ip = {"ip": uuid.uuid4().hex}
                return [limiter.check("api", [ip]).allowed for _ in range(3)]

        assert await asyncio.to_thread(use) == [True, True, False]


async def test_ratelimit_cli_check_explain_and_config(
    start_ratelimit, etcd_server: EtcdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    monkeypatch.setenv("TESSERA_ETCD_ENDPOINTS", etcd_server.endpoint)

    def invoke(*args: str):
        return runner.invoke(app, list(args))

    async with start_ratelimit() as (running, _):
        target = ["--target", running.server.address]
        user = f"user={uuid.uuid4().hex}"
        codes = [
            (await asyncio.to_thread(invoke, "ratelimit", "check", "api", user, *target)).exit_code
            for _ in range(3)
        ]
        assert codes == [0, 0, 1]
        explained = await asyncio.to_thread(invoke, "ratelimit", "explain", "api", user, *target)
        assert explained.exit_code == 0, explained.output
        assert "key-only rule at descriptors[1]" in explained.output

    bad = await asyncio.to_thread(
        invoke, "ratelimit", "config", "check", str(CONFIGS / "bad" / "negative_limit.yaml")
    )
    assert bad.exit_code == 1
    assert "descriptors[0].descriptors[0].rate_limit.requests_per_unit: must be >= 0" in bad.output

    domain = f"cli-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "cli.yaml"
    config.write_text(f"domain: {domain}\ndescriptors:\n  - key: a\n")
    applied = await asyncio.to_thread(invoke, "ratelimit", "config", "apply", str(config))
    assert applied.exit_code == 0, applied.output
    got = await asyncio.to_thread(invoke, "ratelimit", "config", "get", domain)
    assert got.stdout == config.read_text()
    same = await asyncio.to_thread(invoke, "ratelimit", "config", "diff", str(config))
    assert same.exit_code == 0
    config.write_text(config.read_text() + "  - key: b\n")
    changed = await asyncio.to_thread(invoke, "ratelimit", "config", "diff", str(config))
    assert changed.exit_code == 1
    assert "+  - key: b" in changed.stdout
