import os
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import psutil
import pytest

from tessera.core import BackendError
from tessera.core.embedded import EmbeddedServer, PostgresServer, RedisServer, ServerStartError
from tessera.testing import ServerFactory


class _Scripted(EmbeddedServer):
    """A fake server whose shell script stands in for the binary, to drive failure paths."""

    backend: ClassVar[str] = "scripted"

    def __init__(self, data_dir: Path, script: str) -> None:
        super().__init__(data_dir, name="scripted")
        self.script = script

    def _command(self) -> list[str]:
        return ["sh", "-c", self.script]

    def _answers(self, timeout: float) -> bool:
        return False


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_server_that_exits_while_starting_raises_with_its_log(tmp_path: Path) -> None:
    server = _Scripted(tmp_path, "echo 'fatal: bad config' >&2; exit 3")

    with pytest.raises(ServerStartError) as raised:
        server.start(timeout=5)

    error = raised.value
    assert isinstance(error, BackendError)
    assert not error.retryable
    assert (error.server, error.backend) == ("scripted", "scripted")
    assert "exited with code 3" in str(error)
    assert "fatal: bad config" in str(error)
    assert not server.running


def test_server_that_never_answers_is_killed_after_the_timeout(tmp_path: Path) -> None:
    server = _Scripted(tmp_path, "exec sleep 30")

    started = time.monotonic()
    with pytest.raises(ServerStartError, match=r"did not answer within 0\.3 s"):
        server.start(timeout=0.3)

    assert time.monotonic() - started < 3
    assert not server.running


def test_server_on_an_address_that_is_not_local_fails_to_start(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, host="192.0.2.1", port=6399)

    with pytest.raises(ServerStartError, match=r"cannot listen on 192\.0\.2\.1:6399"):
        server.start()


def test_context_exit_stops_the_server_even_after_an_error(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    pids = []

    def fail_while_running() -> None:
        with server:
            assert server.pid is not None
            pids.append(server.pid)
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail_while_running()

    assert not server.running
    assert len(pids) == 1
    assert not _alive(pids[0])


def test_lifecycle_calls_on_a_stopped_server(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)

    server.stop()
    server.kill()
    with pytest.raises(ProcessLookupError):
        server.pause()
    assert repr(server).endswith("stopped>")


def test_start_is_idempotent_and_stop_works_on_a_paused_server(
    redis_factory: ServerFactory[RedisServer],
) -> None:
    server = redis_factory()
    pid = server.pid

    assert server.start() is server
    assert server.pid == pid
    server.pause()
    assert repr(server).endswith("paused>")
    server.stop(timeout=5)

    assert pid is not None
    assert not _alive(pid)


def test_pause_and_kill_reach_every_process_of_the_server(
    postgres_factory: ServerFactory[PostgresServer],
) -> None:
    server = postgres_factory()
    assert server.pid is not None
    postmaster = psutil.Process(server.pid)
    # The postmaster's background workers, each in a session of its own.
    workers = postmaster.children()
    assert {os.getsid(worker.pid) for worker in workers} - {os.getsid(server.pid)}

    server.pause()
    # A worker that exited just before can only be reaped once the postmaster runs again.
    assert _statuses([postmaster, *workers]) - {psutil.STATUS_ZOMBIE} == {psutil.STATUS_STOPPED}
    server.resume()
    assert psutil.STATUS_STOPPED not in _statuses([postmaster, *workers])
    server.kill()

    assert not any(_alive(process.pid) for process in [postmaster, *workers])


def _statuses(processes: list[psutil.Process]) -> set[str]:
    statuses: set[str] = set()
    for process in processes:
        try:
            statuses.add(process.status())
        except psutil.NoSuchProcess:
            continue  # a short-lived worker that finished
    return statuses


def test_servers_left_running_are_stopped_at_interpreter_exit(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from tessera.core.embedded import RedisServer\n"
        "server = RedisServer(sys.argv[1]).start()\n"
        "print(server.pid, flush=True)\n"
    )

    finished = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )

    assert not _alive(int(finished.stdout))
