"""Tessera's built-in lock backends, registered under the `tessera.lock_backends` entry points.

| name | safety | fencing token |
|------|--------|---------------|
| etcd | linearizable | the create revision of the waiter's key |
| redis | efficiency only (no safety under fail-over) | an `INCR` counter per lock |
| postgres | single primary | a sequence |

Each implements `tessera.core.plugins.LockBackend`; the service picks one by name
(`TESSERA_LOCK_BACKEND`). `LockQueue` is the pure FIFO logic they share: who holds a lock and whom
each waiter waits for.
"""

from tessera.lock_backends._etcd import LOCKS_PREFIX, EtcdLockBackend
from tessera.lock_backends._postgres import PostgresLockBackend, PostgresSettings
from tessera.lock_backends._queue import LockQueue, QueuedEntry
from tessera.lock_backends._redis import REDIS_PREFIX, RedisLockBackend

__all__ = [
    "LOCKS_PREFIX",
    "REDIS_PREFIX",
    "EtcdLockBackend",
    "LockQueue",
    "PostgresLockBackend",
    "PostgresSettings",
    "QueuedEntry",
    "RedisLockBackend",
]
