from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from tessera.core.embedded._binaries import find_binary
from tessera.core.embedded._probes import exchange
from tessera.core.embedded._server import EmbeddedServer

# 500 ms ticks allow session timeouts from 1 s to 10 s, short enough for fault tests.
_TICK_MS = 500


class ZooKeeperServer(EmbeddedServer):
    """A standalone ZooKeeper server, run by ``zkServer.sh start-foreground``.

    ``data_dir/zoo.cfg`` is written on every launch: snapshots and logs in ``data_dir/data``
    (they survive :meth:`kill` and :meth:`restart`), ``tickTime`` 500 ms (session timeouts 1 to
    10 s), admin server off, JMX off, four-letter words ``ruok``, ``srvr``, ``stat`` and
    ``mntr`` allowed. Ready means ``srvr`` reports a serving mode.

    Args:
        data_dir: The directory the server owns.
        name: Names the server; also the log file's stem.
        port: The client port; a free one when None.
        host: The address it listens on.

    """

    backend: ClassVar[str] = "zookeeper"

    def __init__(
        self,
        data_dir: Path | str,
        *,
        name: str = "zookeeper",
        port: int | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(data_dir, name=name, port=port, host=host)
        self.config_path = self.data_dir / "zoo.cfg"

    @property
    def hosts(self) -> str:
        """``host:port``, the connection string kazoo and the Tessera settings take."""
        return f"{self.host}:{self.port}"

    def _command(self) -> list[str]:
        return [str(find_binary("zkServer.sh")), "start-foreground", str(self.config_path)]

    def _environment(self) -> dict[str, str]:
        return {
            "JMXDISABLE": "true",
            "ZOO_LOG_DIR": str(self.data_dir),
            "ZOO_LOG4J_PROP": "INFO,CONSOLE",
            # Later -D flags win, so these override log settings that packaged zkEnv.sh scripts
            # hard-code; the small heap and C1-only JIT make the JVM start faster.
            "JVMFLAGS": (
                f"-Dzookeeper.log.dir={self.data_dir} -Dzookeeper.root.logger=INFO,CONSOLE "
                "-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"
            ),
        }

    def _prepare(self) -> None:
        self.config_path.write_text(
            "\n".join(
                [
                    f"tickTime={_TICK_MS}",
                    "initLimit=10",
                    "syncLimit=5",
                    f"dataDir={self.data_dir / 'data'}",
                    f"clientPort={self.port}",
                    f"clientPortAddress={self.host}",
                    "maxClientCnxns=0",
                    "admin.enableServer=false",
                    "4lw.commands.whitelist=ruok,srvr,stat,mntr",
                    "",
                ]
            )
        )

    def _answers(self, timeout: float) -> bool:
        return b"Mode: " in exchange(self.host, self.port, b"srvr", timeout)
