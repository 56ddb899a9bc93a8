from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar, Self

import redis
import redis.exceptions

from tessera.core.embedded._binaries import find_binary
from tessera.core.embedded._errors import ServerStartError
from tessera.core.embedded._lifecycle import StartStop
from tessera.core.embedded._ports import free_ports, port_is_free
from tessera.core.embedded._probes import exchange
from tessera.core.embedded._redis import RedisServer
from tessera.core.embedded._server import EmbeddedServer

#: Hash slots of a Redis Cluster, shared out between the masters.
CLUSTER_SLOTS = 16384
#: A cluster node also listens on its port + this, for the cluster bus.
CLUSTER_BUS_OFFSET = 10000
_MAX_PORT = 65535
_POLL_S = 0.05
_CALL_TIMEOUT_S = 2.0


def _command(server: tuple[str, int], *args: str | int) -> Any:
    """Run one command on a fresh connection; the reply parsed as redis-py parses it."""
    host, port = server
    with redis.Redis(host, port, socket_timeout=_CALL_TIMEOUT_S, decode_responses=True) as client:
        # The parsed reply's type depends on the command: Any.
        return client.execute_command(*args)


class SentinelServer(EmbeddedServer):
    """A Redis Sentinel (``redis-server --sentinel``) watching one master.

    Sentinel rewrites its configuration file as it learns the topology, so the file is written
    once and kept across :meth:`restart`. Ready once it answers PING.

    Args:
        data_dir: The directory the sentinel owns (its configuration file and log).
        master_name: The name clients ask for (``SENTINEL get-master-addr-by-name``).
        master: ``(host, port)`` of the master to watch.
        name: Names the server; also the log file's stem.
        port: The sentinel port; a free one when None.
        host: The address it listens on.
        quorum: Sentinels that must agree a master is down before a failover.
        down_after_ms: How long a master may be silent before it is considered down.
        failover_timeout_ms: Sentinel's failover timeout.

    """

    backend: ClassVar[str] = "redis-sentinel"

    def __init__(
        self,
        data_dir: Path | str,
        *,
        master_name: str,
        master: tuple[str, int],
        name: str = "sentinel",
        port: int | None = None,
        host: str = "127.0.0.1",
        quorum: int = 1,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
    ) -> None:
        super().__init__(data_dir, name=name, port=port, host=host)
        self.master_name = master_name
        self._master = master
        self._quorum = quorum
        self._down_after_ms = down_after_ms
        self._failover_timeout_ms = failover_timeout_ms

    @property
    def config_path(self) -> Path:
        """The configuration file Sentinel keeps up to date."""
        return self.data_dir / "sentinel.conf"

    @property
    def endpoint(self) -> str:
        """``host:port`` of the sentinel."""
        return f"{self.host}:{self.port}"

    def master_address(self) -> tuple[str, int]:
        """Ask the sentinel where the master is now.

        Raises:
            redis.exceptions.RedisError: The sentinel did not answer or knows no such master.

        """
        host, port = _command(
            (self.host, self.port), "SENTINEL get-master-addr-by-name", self.master_name
        )
        return str(host), int(port)

    def _prepare(self) -> None:
        if self.config_path.exists():
            return  # Sentinel's own rewrites hold the topology it has learnt
        host, port = self._master
        name = self.master_name
        self.config_path.write_text(
            f"port {self.port}\n"
            f"bind {self.host}\n"
            f'dir "{self.data_dir}"\n'
            f"sentinel monitor {name} {host} {port} {self._quorum}\n"
            f"sentinel down-after-milliseconds {name} {self._down_after_ms}\n"
            f"sentinel failover-timeout {name} {self._failover_timeout_ms}\n"
            f"sentinel parallel-syncs {name} 1\n",
            encoding="utf-8",
        )

    def _command(self) -> list[str]:
        return [str(find_binary("redis-server")), str(self.config_path), "--sentinel"]

    def _answers(self, timeout: float) -> bool:
        return exchange(self.host, self.port, b"PING\r\n", timeout).startswith(b"+PONG")


class RedisSentinelGroup(StartStop):
    """A Sentinel-managed Redis: one master, its replicas and the sentinels watching them.

    Fault tests kill :attr:`master` and watch a replica take over; :meth:`current_master` says
    which server that is.

    Args:
        base_dir: Parent of every server's data directory.
        replicas: Replicas of the master.
        sentinels: Sentinels (each votes; the quorum is a majority of them).
        master_name: The name clients ask the sentinels for.
        host: The address every server listens on.
        down_after_ms: How long the master may be silent before a failover starts.

    Attributes:
        master: The server that starts as master.
        replicas: The servers that start as its replicas.
        sentinels: The sentinels.

    """

    def __init__(
        self,
        base_dir: Path | str,
        *,
        replicas: int = 1,
        sentinels: int = 1,
        master_name: str = "tessera",
        host: str = "127.0.0.1",
        down_after_ms: int = 1000,
    ) -> None:
        base = Path(base_dir)
        self.master_name = master_name
        self.master = RedisServer(base / "redis-0", name="redis-0", host=host)
        self.replicas = [
            RedisServer(base / f"redis-{index}", name=f"redis-{index}", host=host)
            for index in range(1, replicas + 1)
        ]
        self.sentinels = [
            SentinelServer(
                base / f"sentinel-{index}",
                name=f"sentinel-{index}",
                master_name=master_name,
                master=(host, self.master.port),
                host=host,
                quorum=sentinels // 2 + 1,
                down_after_ms=down_after_ms,
            )
            for index in range(sentinels)
        ]

    @property
    def url(self) -> str:
        """``redis+sentinel://host:port,.../<master_name>/0``, the form `connect_redis` takes."""
        sentinels = ",".join(sentinel.endpoint for sentinel in self.sentinels)
        return f"redis+sentinel://{sentinels}/{self.master_name}/0"

    def start(self, timeout: float = 30.0) -> Self:
        """Start the master, its replicas (replicating) and the sentinels; wait until all agree.

        Raises:
            BinaryNotFoundError: redis-server is not installed.
            ServerStartError: A server did not start, or the replicas did not sync in time; every
                server is stopped.

        """
        deadline = time.monotonic() + timeout
        try:
            self.master.start(timeout)
            for replica in self.replicas:
                replica.start(timeout)
                _command(
                    (replica.host, replica.port), "REPLICAOF", self.master.host, self.master.port
                )
            self._await_replication(deadline)
            for sentinel in self.sentinels:
                sentinel.start(timeout)
        except (ServerStartError, redis.exceptions.RedisError) as error:
            self.stop()
            if isinstance(error, ServerStartError):
                raise
            raise ServerStartError(
                self.master.name, "redis", str(error), self.master.log_path
            ) from error
        return self

    def current_master(self) -> RedisServer:
        """Return the server the first reachable sentinel names as master now.

        Raises:
            LookupError: No sentinel answered, or it names none of this group's servers.

        """
        for sentinel in self.sentinels:
            try:
                host, port = sentinel.master_address()
            except redis.exceptions.RedisError:
                continue
            for server in (self.master, *self.replicas):
                if (server.host, server.port) == (host, port):
                    return server
        raise LookupError("no sentinel names a master of this group")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the sentinels first (no failover while the servers stop), then every server."""
        for server in (*self.sentinels, *self.replicas, self.master):
            server.stop(timeout)

    def _await_replication(self, deadline: float) -> None:
        for replica in self.replicas:
            address = (replica.host, replica.port)
            while _command(address, "INFO", "replication").get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise ServerStartError(
                        replica.name, "redis", "it did not sync with the master", replica.log_path
                    )
                time.sleep(_POLL_S)


class RedisClusterNode(RedisServer):
    """A Redis server with cluster mode on; its cluster state lives in ``data_dir/nodes.conf``.

    It listens on its port and on port + ``CLUSTER_BUS_OFFSET`` (the cluster bus).
    """

    backend: ClassVar[str] = "redis-cluster"

    def _ports(self) -> list[int]:
        return [self.port, self.port + CLUSTER_BUS_OFFSET]

    def _command(self) -> list[str]:
        return [
            *super()._command(),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(self.data_dir / "nodes.conf"),
            "--cluster-node-timeout",
            "2000",
        ]


class RedisCluster(StartStop):
    """A Redis Cluster of masters on local ports, the hash slots shared out evenly.

    The cluster is formed without redis-cli: each node is given its slots (CLUSTER ADDSLOTS) and
    introduced to the first (CLUSTER MEET); ready once every node reports ``cluster_state:ok``.

    Args:
        base_dir: Parent of the nodes' data directories.
        size: Number of masters (at least 3, as Redis Cluster wants).
        host: The address every node listens on.

    Attributes:
        nodes: The masters, in slot order.

    """

    def __init__(self, base_dir: Path | str, size: int = 3, *, host: str = "127.0.0.1") -> None:
        self.nodes = [
            RedisClusterNode(
                Path(base_dir, f"node-{index}"), name=f"node-{index}", host=host, port=port
            )
            for index, port in enumerate(_cluster_ports(size, host))
        ]

    @property
    def url(self) -> str:
        """``redis+cluster://host:port,...``, the form `connect_redis_cluster` takes."""
        return "redis+cluster://" + ",".join(f"{n.host}:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 30.0) -> Self:
        """Start every node, assign the slots, join the nodes and wait for ``cluster_state:ok``.

        Raises:
            BinaryNotFoundError: redis-server is not installed.
            ServerStartError: A node did not start or the cluster did not form in time; every
                node is stopped.

        """
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes:
                node.start(timeout)
            self._form()
            self._await_ok(deadline, timeout)
        except (ServerStartError, redis.exceptions.RedisError) as error:
            self.stop()
            if isinstance(error, ServerStartError):
                raise
            first = self.nodes[0]
            raise ServerStartError(
                first.name, "redis-cluster", str(error), first.log_path
            ) from error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop(timeout)

    def _form(self) -> None:
        first = self.nodes[0]
        share = CLUSTER_SLOTS // len(self.nodes)
        for index, node in enumerate(self.nodes):
            address = (node.host, node.port)
            if int(_command(address, "CLUSTER INFO")["cluster_slots_assigned"]):
                continue  # restarted from its nodes.conf: already a member
            end = CLUSTER_SLOTS if index == len(self.nodes) - 1 else (index + 1) * share
            _command(address, "CLUSTER ADDSLOTS", *range(index * share, end))
            if node is not first:
                _command(address, "CLUSTER MEET", first.host, first.port)

    def _await_ok(self, deadline: float, timeout: float) -> None:
        for node in self.nodes:
            address = (node.host, node.port)
            while _command(address, "CLUSTER INFO")["cluster_state"] != "ok":
                if time.monotonic() > deadline:
                    raise ServerStartError(
                        node.name,
                        "redis-cluster",
                        f"the cluster was not ok within {timeout:g} s",
                        node.log_path,
                    )
                time.sleep(_POLL_S)


def _cluster_ports(count: int, host: str) -> list[int]:
    """Free ports whose cluster-bus ports (port + 10000) are free and valid too."""
    chosen: list[int] = []
    while len(chosen) < count:
        for port in free_ports(count, host):
            bus = port + CLUSTER_BUS_OFFSET
            if bus <= _MAX_PORT and port not in chosen and port_is_free(host, bus):
                chosen.append(port)
    return chosen[:count]
