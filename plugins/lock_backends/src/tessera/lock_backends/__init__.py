"""Tessera's built-in lock backends, registered under the `tessera.lock_backends` entry points.

| name | safety | fencing token |
|------|--------|---------------|
| etcd | linearizable | the create revision of the waiter's key |
| redis | efficiency only (no safety under fail-over) | an `INCR` counter per lock |
| postgres | single primary | a sequence |
| zookeeper | linearizable | the creation zxid (czxid) of the entry's place node |

Each implements `tessera.core.plugins.LockBackend`; the service picks one by name
(`TESSERA_LOCK_BACKEND`). `LockQueue` is the pure FIFO logic they share: who holds a lock and whom
each waiter waits for. `ZooKeeperConnection` puts kazoo's requests behind asyncio futures.
"""

from tessera.lock_backends._etcd import LOCKS_PREFIX, EtcdLockBackend
from tessera.lock_backends._postgres import PostgresLockBackend, PostgresSettings
from tessera.lock_backends._queue import LockQueue, QueuedEntry
from tessera.lock_backends._redis import REDIS_PREFIX, RedisLockBackend
from tessera.lock_backends._zookeeper import ZooKeeperLockBackend, ZooKeeperSettings
from tessera.lock_backends._zookeeper_client import Requests, ZooKeeperConnection
from tessera.lock_backends._zookeeper_layout import ZK_ROOT

__all__ = [
    "LOCKS_PREFIX",
    "REDIS_PREFIX",
    "ZK_ROOT",
    "EtcdLockBackend",
    "LockQueue",
    "PostgresLockBackend",
    "PostgresSettings",
    "QueuedEntry",
    "RedisLockBackend",
    "Requests",
    "ZooKeeperConnection",
    "ZooKeeperLockBackend",
    "ZooKeeperSettings",
]
