import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path

from tessera.core.embedded import spawn


class ChildProcess:
    """A long-running Tessera process (a service, the worker or beat) started by the stack.

    It runs in its own process group, so Ctrl-C in the terminal reaches only ``tessera dev up``,
    which then stops the children in order. Output goes to ``log_path``.

    Not thread-safe: one supervisor drives it.

    Args:
        command: Program and arguments.
        log_path: File receiving stdout and stderr (appended).
        environment: Variables added to the supervisor's environment.

    """

    def __init__(
        self, command: Sequence[str], log_path: Path, environment: Mapping[str, str]
    ) -> None:
        self.command = tuple(command)
        self.log_path = log_path
        self.environment = dict(environment)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """Process id once started (kept after exit, for reports), else None."""
        return None if self._process is None else self._process.pid

    @property
    def returncode(self) -> int | None:
        """Exit code once the process has exited, else None (never blocks)."""
        return None if self._process is None else self._process.poll()

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Launch the process; returns at once."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._process = spawn(self.command, self.log_path, environment=self.environment)

    def terminate(self) -> None:
        """Ask the process to stop (SIGTERM to the group leader, which stops its own children)."""
        if self.running and self._process is not None:
            with suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float) -> None:
        """Block until the process exits or ``timeout_s`` passes, whichever comes first."""
        if self._process is not None:
            with suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout_s)

    def kill(self) -> None:
        """SIGKILL the whole process group and reap the leader.

        Also run after a clean exit, since children of the leader (a Celery pool) may linger.
        """
        if self._process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()
