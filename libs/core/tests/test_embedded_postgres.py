import asyncio
import os
import pwd
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tessera.core import ConfigError
from tessera.core.embedded import PostgresServer, find_binary
from tessera.core.embedded._server import Account, spawn
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


AS_ROOT = pytest.mark.skipif(
    os.geteuid() != 0, reason="only root switches accounts (CI runs as root, so these run there)"
)


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


def _nobody() -> Account:
    entry = pwd.getpwnam("nobody")
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


@AS_ROOT
def test_a_process_spawned_as_an_account_has_its_ids_and_no_other_groups(tmp_path: Path) -> None:
    account = _nobody()
    log = tmp_path / "ids.log"

    process = spawn(["sh", "-c", "echo $$; id -u; id -g; id -G"], log, account=account)

    assert process.wait(10) == 0
    pid, uid, gid, groups = log.read_text().split("\n")[:4]
    assert int(pid) == process.pid  # the helper execs: signals to the pid reach the server
    assert (int(uid), int(gid)) == (account.uid, account.gid)
    assert groups.split() == [str(account.gid)]


# Spawns as ``nobody`` while gRPC calls run on another thread. With gRPC's default transport a
# plain fork crashed 40 % of such children (SIGSEGV, SIGBUS) in gRPC's atfork handlers.
_BUSY_GRPC_SPAWNS = textwrap.dedent(
    """
    import asyncio, pathlib, pwd, sys, threading
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from tessera.core.embedded._server import Account, spawn

    async def call_until(stop):
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            started.set()
            async def check():
                while not stop.is_set():
                    await stub.Check(health_pb2.HealthCheckRequest())
            await asyncio.gather(*(check() for _ in range(4)))
        await server.stop(None)

    started, stop = threading.Event(), threading.Event()
    caller = threading.Thread(target=asyncio.run, args=(call_until(stop),))
    caller.start()
    started.wait()
    entry = pwd.getpwnam("nobody")
    account = Account(entry.pw_name, entry.pw_uid, entry.pw_gid)
    log = pathlib.Path(sys.argv[1])
    codes = [spawn(["true"], log, account=account).wait(10) for _ in range(60)]
    stop.set()
    caller.join()
    print(sorted(set(codes)))
    """
)


@AS_ROOT
def test_spawning_as_an_account_survives_busy_grpc_threads(tmp_path: Path) -> None:
    environment = {**os.environ, "GRPC_EXPERIMENTS": ""}  # gRPC's default transport

    result = subprocess.run(
        [sys.executable, "-c", _BUSY_GRPC_SPAWNS, str(tmp_path / "spawn.log")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[0]"
