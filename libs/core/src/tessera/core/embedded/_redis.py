from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from tessera.core.embedded._binaries import find_binary
from tessera.core.embedded._probes import exchange
from tessera.core.embedded._server import EmbeddedServer


class RedisServer(EmbeddedServer):
    """A Redis server; ready once it answers PING (not while it is still loading its data).

    Without persistence (the default) a restart starts empty. With ``appendonly=True`` every
    write goes to an append-only file in ``data_dir`` before Redis answers it, so data survives
    :meth:`kill` followed by :meth:`restart`.

    Args:
        data_dir: The directory the server owns.
        name: Names the server; also the log file's stem.
        port: The client port; a free one when None.
        host: The address it listens on.
        appendonly: Keep an append-only file, for restart tests.

    """

    backend: ClassVar[str] = "redis"

    def __init__(
        self,
        data_dir: Path | str,
        *,
        name: str = "redis",
        port: int | None = None,
        host: str = "127.0.0.1",
        appendonly: bool = False,
    ) -> None:
        super().__init__(data_dir, name=name, port=port, host=host)
        self.appendonly = appendonly

    @property
    def url(self) -> str:
        """``redis://host:port/0``, the form redis-py and the Tessera settings take."""
        return f"redis://{self.host}:{self.port}/0"

    def _command(self) -> list[str]:
        return [
            str(find_binary("redis-server")),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.data_dir),
            "--daemonize",
            "no",
            "--logfile",
            "",
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
        ]

    def _answers(self, timeout: float) -> bool:
        return exchange(self.host, self.port, b"PING\r\n", timeout).startswith(b"+PONG")
