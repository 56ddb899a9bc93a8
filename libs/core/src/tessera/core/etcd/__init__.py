"""etcd access: a client with retries and failover, resumable watches, and kept-alive leases.

etcd holds all coordinated state of Tessera under `/tessera/<service>/...`. This package wraps
aetcd (the maintained asyncio client) with what every service needs and aetcd leaves out:

- `EtcdClient`: calls retried with exponential backoff and jitter, within a `RetryPolicy`'s
  bounds, failing over across the configured members; errors are `BackendError(backend="etcd")`.
- `EtcdClient.watch_prefix`: a watch that resumes after a broken stream without losing or
  repeating events, and relists (`Relist`) when the history it needs was compacted.
- `KeptLease`: a lease refreshed in the background that reports its loss (`lost`) instead of
  quietly granting a new one.

Example::

    async with EtcdClient.from_settings(settings) as etcd:
        async with etcd.keep_lease(10) as lease:
            await etcd.put("/tessera/registry/instances/a", b"...", lease=lease.id)
        async for change in etcd.watch_prefix("/tessera/registry/"):
            ...
"""

from tessera.core.etcd._client import DEFAULT_TIMEOUT_S, EtcdClient
from tessera.core.etcd._errors import etcd_error
from tessera.core.etcd._kv import Key, KeyValue, Snapshot, prefix_end
from tessera.core.etcd._lease import KeptLease
from tessera.core.etcd._retry import NO_RETRY, RetryPolicy
from tessera.core.etcd._watch import EventType, Relist, WatchEvent, watch_prefix

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "NO_RETRY",
    "EtcdClient",
    "EventType",
    "KeptLease",
    "Key",
    "KeyValue",
    "Relist",
    "RetryPolicy",
    "Snapshot",
    "WatchEvent",
    "etcd_error",
    "prefix_end",
    "watch_prefix",
]
