import asyncio
import os
from pathlib import Path

import pytest

from tessera.core import ConfigError
from tessera.core.embedded import PostgresServer, find_binary
from tessera.testing import ServerFactory


async def _psql(dsn: str, sql: str) -> tuple[int, str]:
    """Run ``sql`` through psql; return its exit code and its output (or its error)."""
    process = await asyncio.create_subprocess_exec(
        str(find_binary("psql")),
        dsn,
        "--no-psqlrc",
        "--tuples-only",
        "--no-align",
        "--command",
        sql,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PGCONNECT_TIMEOUT": "1"},
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, (out or err).decode().strip()


async def test_postgres_server_accepts_a_login_over_tcp(postgres_server: PostgresServer) -> None:
    code, output = await _psql(postgres_server.dsn, "select current_user, inet_server_port()")

    assert (code, output) == (0, f"postgres|{postgres_server.port}")
    assert postgres_server.dsn == f"postgresql://postgres@127.0.0.1:{postgres_server.port}/postgres"


async def test_paused_postgres_refuses_logins_until_resumed(
    postgres_factory: ServerFactory[PostgresServer],
) -> None:
    server = await asyncio.to_thread(postgres_factory)

    server.pause()
    code, output = await _psql(server.dsn, "select 1")
    assert code != 0
    assert "timeout" in output

    server.resume()
    assert await _psql(server.dsn, "select 1") == (0, "1")


async def test_killed_postgres_restarts_with_its_committed_data(
    postgres_factory: ServerFactory[PostgresServer],
) -> None:
    server = await asyncio.to_thread(postgres_factory)
    code, output = await _psql(
        server.dsn, "create table t (v text); insert into t values ('durable')"
    )
    assert code == 0, output

    server.kill()
    await asyncio.to_thread(server.restart)

    assert await _psql(server.dsn, "select v from t") == (0, "durable")


AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="the account switch happens for root only")


@AS_ROOT
def test_postgres_as_root_refuses_a_data_dir_its_account_cannot_reach(tmp_path: Path) -> None:
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    server = PostgresServer(hidden / "postgres")

    with pytest.raises(ConfigError, match="not searchable"):
        server.start()


@AS_ROOT
def test_postgres_as_root_needs_an_existing_account() -> None:
    with pytest.raises(ConfigError, match="no-such-account"):
        PostgresServer("/nonexistent", os_user="no-such-account")
