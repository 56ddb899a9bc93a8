"""Python SDK of the lock service: sessions, fair locks with fencing tokens, semaphores, elections.

- `LockClient` (async): `async with client.lock("name", ttl=10) as held:` opens a session,
  waits for the lock, renews the session in the background and releases on exit. `held.token`
  is the fencing token; `held.lost` turns true as soon as the lock may have ended (computed from
  when each renewal was sent, so it turns true before the server-side lease can end).
- `client.semaphore("name", permits=N)`: one of N permits, the same way; `client.campaign(...)`
  leads an election (`Leadership`: `.lost`, `.proclaim`), `client.leader(...)` and
  `client.observe(...)` (async iterator of `Leader | None`, reconnecting after a service
  restart) watch one. Decorators run every call of a function under a lock (`locked`), a
  permit (`with_permit`) or leadership (`leading`).
- `SyncLockClient`: the same for blocking code.
- `FencedResource`: the guard a resource uses to reject writes carrying stale tokens
  (`StaleTokenError`).
"""

from tessera.client.lock._client import HeldLock, LockClient, Mode
from tessera.client.lock._election import Leader, Leadership
from tessera.client.lock._errors import StaleTokenError
from tessera.client.lock._fencing import FencedResource
from tessera.client.lock._session import Session
from tessera.client.lock._sync import SyncLockClient

__all__ = [
    "FencedResource",
    "HeldLock",
    "Leader",
    "Leadership",
    "LockClient",
    "Mode",
    "Session",
    "StaleTokenError",
    "SyncLockClient",
]
