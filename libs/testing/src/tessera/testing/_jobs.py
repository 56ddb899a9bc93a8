from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


class JobsProcess:
    """A real `python -m tessera.core.jobs ...` process (a Celery worker or beat) for tests.

    It runs in its own session (process group), so `kill` takes the pool's children with it as
    a lost machine would; its output goes to `log_path`.

    Args:
        arguments: The command's arguments, e.g. `["worker", "-Q", "lock", "-c", "1"]`.
        env: The whole environment of the process (`TESSERA_REDIS_URL`, ...).
        log_path: Where stdout and stderr go (appended).

    """

    def __init__(self, arguments: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tessera.core.jobs", *arguments],
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL the whole process group and wait for the main process."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the group (a warm shutdown), then SIGKILL it after `timeout_s`."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self, tail: int = 4000) -> str:
        """Return the last `tail` characters of the process's output, for assertion messages."""
        return self.log_path.read_text(errors="replace")[-tail:]
