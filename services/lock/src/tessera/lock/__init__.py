"""The Tessera lock service: sessions, fair fenced locks, semaphores and elections.

Run it with `python -m tessera.lock` (or `tessera-lock`); it reads `LockSettings` from the
environment and serves `tessera.lock.v1.Lock` through the core server kit. All state lives in
the backend chosen by `TESSERA_LOCK_BACKEND` (a `tessera.lock_backends` plugin, default etcd), so
replicas share it. Background jobs (reaper, statistics) live in `tessera.lock.jobs`. See
docs/lock.md.
"""

from tessera.lock._binding import LOCK_SERVICE, load_backend, lock_binding
from tessera.lock._servicer import LockServicer
from tessera.lock._settings import LockSettings

__all__ = ["LOCK_SERVICE", "LockServicer", "LockSettings", "load_backend", "lock_binding"]
