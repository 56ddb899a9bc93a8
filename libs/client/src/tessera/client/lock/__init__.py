"""Python SDK of the lock service: sessions, fair locks with fencing tokens.

- `LockClient` (async): `async with client.lock("name", ttl=10) as held:` opens a session,
  waits for the lock, renews the session in the background and releases on exit. `held.token`
  is the fencing token; `held.lost` turns true as soon as the lock may have ended (computed from
  when each renewal was sent, so it turns true before the server-side lease can end).
- `SyncLockClient`: the same for blocking code.
- `FencedResource`: the guard a resource uses to reject writes carrying stale tokens
  (`StaleTokenError`).
"""

from tessera.client.lock._client import HeldLock, LockClient, Mode
from tessera.client.lock._errors import StaleTokenError
from tessera.client.lock._fencing import FencedResource
from tessera.client.lock._session import Session
from tessera.client.lock._sync import SyncLockClient

__all__ = [
    "FencedResource",
    "HeldLock",
    "LockClient",
    "Mode",
    "Session",
    "StaleTokenError",
    "SyncLockClient",
]
