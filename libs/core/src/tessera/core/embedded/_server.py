from __future__ import annotations

import abc
import atexit
import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

import psutil

from tessera.core.embedded._errors import ServerStartError
from tessera.core.embedded._lifecycle import StartStop
from tessera.core.embedded._ports import free_port, port_is_free

_POLL_INTERVAL = 0.05
_PROBE_TIMEOUT = 1.0
_EXIT_STOP_TIMEOUT = 5.0
_SIGNAL_WAIT = 1.0
_SIGNAL_POLL_INTERVAL = 0.005
_FROZEN = frozenset({psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD})
# Run as: argv[1] the uid, argv[2] the gid, the rest the command (no supplementary groups).
_RUN_AS = (
    "import os, sys; os.setgroups([]); os.setgid(int(sys.argv[2])); os.setuid(int(sys.argv[1])); "
    "os.execv(sys.argv[3], sys.argv[3:])"
)


@dataclass(frozen=True, slots=True)
class Account:
    """An operating-system account a server process runs as instead of the caller's.

    Attributes:
        name: The login name, e.g. ``"postgres"``.
        uid: Its user id.
        gid: Its primary group id.

    """

    name: str
    uid: int
    gid: int


def spawn(
    command: Sequence[str],
    log_path: Path,
    *,
    account: Account | None = None,
    environment: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session and process group, output appended to ``log_path``.

    Args:
        command: The program and its arguments.
        log_path: The file that receives the program's stdout and stderr.
        account: Run as this account (the caller must be root); None keeps the caller's.
        environment: Variables added to the caller's environment.

    Returns:
        The running process; its pid is also its process group id.

    """
    env = {**os.environ, **environment} if environment else None
    argv = list(command)
    if account is not None:
        # Not Popen's user and group: with them Popen forks instead of using vfork, and a fork
        # runs the atfork handlers of gRPC, which crash the child (SIGSEGV, SIGBUS) while gRPC
        # threads are busy in the caller. A helper started by vfork switches the account and
        # execs, so the pid is still the server's. The program is found here: once switched,
        # the helper may not read its own standard library.
        path = (env or os.environ).get("PATH")
        program = shutil.which(argv[0], path=path)
        if program is None:
            raise FileNotFoundError(errno.ENOENT, "program not found", argv[0])
        ids = (str(account.uid), str(account.gid))
        argv = [sys.executable, "-I", "-S", "-c", _RUN_AS, *ids, program, *argv[1:]]
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C in the caller's terminal must not reach it, and its
            # process group holds the children that do not start sessions of their own.
            start_new_session=True,
            env=env,
        )


class EmbeddedServer(StartStop):
    """A real server binary run as a child process on a local port, for the dev stack and tests.

    Subclasses say how to launch the binary and how to tell that it answers; this class owns the
    process: it runs in a session of its own, signals reach it and all its descendants (so
    pause and kill freeze or end the whole server), its output goes to ``log_path``, and it is
    stopped on context exit and, failing that, when the interpreter exits. The port and data
    directory stay the same across :meth:`restart`.

    The API is synchronous and blocks while a server starts or stops: async callers wrap
    :meth:`start`, :meth:`stop` and :meth:`restart` in ``asyncio.to_thread``. One server object is
    driven by one thread at a time.

    Attributes:
        name: Names the server in logs and errors; also its log file's stem.
        host: The address it listens on.
        port: Its client port, chosen free at construction unless given.
        data_dir: The directory it owns: its state and its log file live there.
        log_path: Its stdout and stderr, appended across restarts.

    """

    backend: ClassVar[str]
    """The kind of server, e.g. ``"etcd"``; errors carry it."""

    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    """The signal that asks the server for a clean shutdown."""

    def __init__(
        self,
        data_dir: Path | str,
        *,
        name: str,
        port: int | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.name = name
        self.host = host
        self.port = free_port(host) if port is None else port
        self.data_dir = Path(data_dir)
        self.log_path = self.data_dir / f"{name}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    @abc.abstractmethod
    def _command(self) -> list[str]:
        """Return the command line that runs the server in the foreground."""

    @abc.abstractmethod
    def _answers(self, timeout: float) -> bool:
        """Return whether the server answers a real request within ``timeout`` seconds."""

    def _prepare(self) -> None:
        """Make ``data_dir`` ready for a launch; runs before every launch (and so every restart)."""

    def _account(self) -> Account | None:
        """Return the account the server must run as, or None for the caller's."""
        return None

    def _environment(self) -> dict[str, str]:
        """Return variables the server needs besides the caller's environment."""
        return {}

    def _ports(self) -> list[int]:
        """Return every port the server listens on."""
        return [self.port]

    @property
    def pid(self) -> int | None:
        """The server's process id (also its process group id), or None when it is not running."""
        return self._process.pid if self.running and self._process else None

    @property
    def running(self) -> bool:
        """Whether the server process exists (a paused server is running)."""
        return self._process is not None and self._process.poll() is None

    @property
    def paused(self) -> bool:
        """Whether :meth:`pause` stopped the server and :meth:`resume` has not continued it."""
        return self._paused and self.running

    def start(self, timeout: float = 30.0) -> Self:
        """Launch the server and wait until it answers a real request.

        Does nothing when the server is already running.

        Args:
            timeout: Seconds to wait for the first answer.

        Returns:
            The server itself, so ``server = EtcdServer(path).start()`` reads naturally.

        Raises:
            BinaryNotFoundError: The server's binary is not installed.
            ServerStartError: The server exited, or did not answer in time (it is then killed).

        """
        if not self.running:
            self._launch()
            self._wait_until_answering(time.monotonic() + timeout, timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to shut down cleanly; kill it if it has not exited after ``timeout``.

        A paused server is resumed first so that it can act on the request. Processes of the
        server still left then are killed. Does nothing when the server is not running.

        Args:
            timeout: Seconds to wait for a clean exit.

        """
        self._request_stop()
        self._await_exit(time.monotonic() + timeout)

    def kill(self) -> None:
        """Kill every process of the server at once (SIGKILL), as a crash would.

        Returns once they are gone (at most about a second for processes that are not the
        caller's children).
        """
        if self._process is not None:
            self._reap(self._process)

    def pause(self) -> None:
        """Freeze every process of the server (SIGSTOP): it keeps its sockets but answers nothing.

        Returns once every process of the server has stopped (SIGSTOP takes effect when a
        process is next scheduled), or after about a second at most on a very busy machine.

        Raises:
            ProcessLookupError: The server is not running.

        """
        self._require_running()
        self._paused = True
        deadline = time.monotonic() + _SIGNAL_WAIT
        # Again until all are frozen: a process forked just before its parent froze is new.
        while not all(_frozen(process) for process in self._signal_all(signal.SIGSTOP)):
            if time.monotonic() > deadline:
                break
            time.sleep(_SIGNAL_POLL_INTERVAL)

    def resume(self) -> None:
        """Continue a paused server (SIGCONT).

        Raises:
            ProcessLookupError: The server is not running.

        """
        self._require_running()
        self._signal_all(signal.SIGCONT)
        self._paused = False

    def restart(self, timeout: float = 30.0) -> None:
        """Stop the server if it runs, then start it again on the same port with the same data.

        Args:
            timeout: Seconds allowed for each of the stop and the start.

        Raises:
            ServerStartError: The server did not come back.

        """
        self.stop(timeout)
        self.start(timeout)

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.name} {self.host}:{self.port} {state}>"

    def _launch(self) -> None:
        """Start the process without waiting for it to answer (a cluster launches all first)."""
        command = self._command()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for port in self._ports():
            # Another server on the port would answer the readiness probe in this one's place.
            try:
                free = port_is_free(self.host, port)
            except OSError as error:
                reason = f"it cannot listen on {self.host}:{port}: {error}"
                raise self._start_error(reason) from None
            if not free:
                raise self._start_error(f"port {port} is in use by another process")
        self._prepare()
        self._process = spawn(
            command, self.log_path, account=self._account(), environment=self._environment()
        )
        self._paused = False
        _live_servers.add(self)

    def _wait_until_answering(self, deadline: float, timeout: float) -> None:
        process = self._process
        if process is None:
            raise self._start_error("it was never launched")
        while True:
            code = process.poll()
            if code is not None:
                self._reap(process)
                raise self._start_error(f"it exited with code {code}")
            remaining = deadline - time.monotonic()
            if self._answers(min(_PROBE_TIMEOUT, max(remaining, _POLL_INTERVAL))):
                if process.poll() is None:
                    return
                continue  # it answered, then exited: report the exit
            if time.monotonic() >= deadline:
                self._reap(process)
                raise self._start_error(f"it did not answer within {timeout:g} s")
            time.sleep(_POLL_INTERVAL)

    def _request_stop(self) -> None:
        """Send the stop signal without waiting (a cluster stops its members together)."""
        if self._process is not None and self.running:
            self._signal_all(signal.SIGCONT)
            with suppress(ProcessLookupError):
                self._process.send_signal(self.stop_signal)

    def _await_exit(self, deadline: float) -> None:
        """Wait until ``deadline`` for the process to exit, then kill what is left of it."""
        process = self._process
        if process is None:
            return
        with suppress(subprocess.TimeoutExpired):
            process.wait(max(deadline - time.monotonic(), 0))
        self._reap(process)

    def _start_error(self, reason: str) -> ServerStartError:
        return ServerStartError(self.name, self.backend, reason, self.log_path)

    def _require_running(self) -> None:
        if not self.running:
            raise ProcessLookupError(f"{self.name} is not running")

    def _signal_all(self, signum: signal.Signals) -> list[psutil.Process]:
        """Send ``signum`` to every process of the server; return those processes.

        Those are the process group the server was started in and every descendant, since
        some servers' children start sessions of their own (PostgreSQL's do).
        """
        # Once the leader is reaped its pid is free for reuse: signal nothing by that number.
        if self._process is None or self._process.poll() is not None:
            return []
        try:
            leader = psutil.Process(self._process.pid)
            processes = [leader, *leader.children(recursive=True)]
        except psutil.NoSuchProcess:
            processes = []
        with suppress(ProcessLookupError):
            os.killpg(self._process.pid, signum)
        for process in processes[1:]:
            with suppress(psutil.NoSuchProcess):
                process.send_signal(signum)
        return processes

    def _reap(self, process: subprocess.Popen[bytes]) -> None:
        # SIGKILL everything: the leader may be gone already while children linger, and a
        # stopped process dies from SIGKILL without being continued.
        killed = self._signal_all(signal.SIGKILL)
        process.wait()
        psutil.wait_procs(killed[1:], timeout=_SIGNAL_WAIT)
        self._process = None
        self._paused = False
        _live_servers.discard(self)


def _frozen(process: psutil.Process) -> bool:
    try:
        return process.status() in _FROZEN
    except psutil.NoSuchProcess:
        return True


class _LiveServers:
    """Servers with a process, so that interpreter exit stops the ones nobody stopped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._servers: set[EmbeddedServer] = set()

    def add(self, server: EmbeddedServer) -> None:
        with self._lock:
            self._servers.add(server)

    def discard(self, server: EmbeddedServer) -> None:
        with self._lock:
            self._servers.discard(server)

    def stop_all(self) -> None:
        with self._lock:
            servers = list(self._servers)
        for server in servers:
            server.stop(_EXIT_STOP_TIMEOUT)


_live_servers = _LiveServers()
atexit.register(_live_servers.stop_all)
