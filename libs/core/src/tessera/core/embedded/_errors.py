from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tessera.core import BackendError, ConfigError

_LOG_TAIL_BYTES = 2000


class BinaryNotFoundError(ConfigError):
    """A server binary is installed nowhere Tessera looks for it.

    Not retryable: the machine needs the binary installed (or PATH fixed) first.

    Attributes:
        binary: The executable's file name, e.g. ``"etcd"``.
        searched: Every place looked in, in order (``"PATH"`` stands for the PATH lookup).
        hint: How to get the binary.

    """

    def __init__(self, binary: str, searched: Sequence[str], hint: str) -> None:
        self.binary = binary
        self.searched = tuple(searched)
        self.hint = hint
        super().__init__(f"{binary} not found; looked in {', '.join(self.searched)}. {hint}")


class ServerStartError(BackendError):
    """An embedded server exited or did not answer while starting.

    The message carries the end of the server's log, which is where the cause usually is. Not
    retryable: the log needs reading first.

    Attributes:
        server: The server's name, e.g. ``"etcd"`` or ``"etcd-1"``.
        backend: The kind of server, e.g. ``"etcd"``.
        log_path: The server's full log file.

    """

    def __init__(self, server: str, backend: str, reason: str, log_path: Path) -> None:
        self.server = server
        self.log_path = log_path
        super().__init__(
            f"{server} failed to start: {reason}; log {log_path} ends with:\n{_log_tail(log_path)}",
            backend=backend,
            retryable=False,
        )


def _log_tail(log_path: Path) -> str:
    try:
        with log_path.open("rb") as log:
            log.seek(0, 2)
            log.seek(max(0, log.tell() - _LOG_TAIL_BYTES))
            return log.read().decode(errors="replace")
    except OSError as error:
        return f"<log unreadable: {error}>"
