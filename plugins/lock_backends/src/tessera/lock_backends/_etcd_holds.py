"""Reentrant hold counts of the etcd lock backend.

A grant held once has no hold key. Each reentrant acquisition beyond the first writes
`HOLDS_PREFIX + quote(name) + "/" + session` = `{"holds": n, "request_id": ...}`, bound to the
session's lease (so it vanishes with the session), the request id being the one of the latest
acquisition so that its retry adds nothing. Every change is a compare-and-swap on the key's
mod revision.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from tessera.core.etcd import EtcdClient

#: Hold keys live under `HOLDS_PREFIX + quote(name) + "/"`, one per session holding more than once.
HOLDS_PREFIX = "/tessera/lock/holds/"


@dataclass(frozen=True, slots=True)
class Hold:
    """A grant's hold count as read (`mod_revision` 0: no key, held once)."""

    holds: int
    request_id: str
    mod_revision: int


#: The hold count of a grant without a hold key.
ONCE = Hold(1, "", 0)


def holds_prefix(name: str) -> str:
    """Return the prefix of the hold keys of lock `name`."""
    return f"{HOLDS_PREFIX}{quote(name, safe='')}/"


def hold_key(name: str, session_id: str) -> str:
    """Return the hold key of one session on lock `name`."""
    return holds_prefix(name) + session_id


async def read_hold(etcd: EtcdClient, name: str, session_id: str) -> Hold:
    """Read one session's hold count on lock `name`."""
    found = await etcd.get(hold_key(name, session_id))
    if found is None:
        return ONCE
    fields = json.loads(found.value)
    return Hold(int(fields["holds"]), str(fields["request_id"]), int(found.mod_revision))


async def read_holds(etcd: EtcdClient, name_prefix: str) -> dict[str, dict[str, int]]:
    """Return the hold counts above 1 of every lock whose name starts with `name_prefix`.

    Returns:
        Hold counts by lock name, then by session.

    """
    snapshot = await etcd.get_prefix(HOLDS_PREFIX + quote(name_prefix, safe=""))
    holds: dict[str, dict[str, int]] = defaultdict(dict)
    for item in snapshot.items:
        encoded_name, _, session_id = item.key.decode()[len(HOLDS_PREFIX) :].rpartition("/")
        holds[unquote(encoded_name)][session_id] = int(json.loads(item.value)["holds"])
    return holds


async def set_hold(
    etcd: EtcdClient,
    entry_key: str,
    token: int,
    key: str,
    seen: Hold,
    new: Hold,
    lease_id: int,
) -> bool:
    """Move a hold count from `seen` to `new` while the grant's entry is still `token`.

    `new.holds == 1` deletes the hold key.

    Returns:
        Whether the swap happened (False: the entry or the count changed meanwhile).

    """
    entry_bytes, key_bytes = entry_key.encode(), key.encode()
    value = json.dumps({"holds": new.holds, "request_id": new.request_id}).encode()

    def swap(client: Any) -> Any:
        tx = client.transactions
        unchanged = (
            tx.mod(key_bytes) == seen.mod_revision
            if seen.mod_revision
            else tx.version(key_bytes) == 0
        )
        change = (
            tx.delete(key_bytes) if new.holds == 1 else tx.put(key_bytes, value, lease=lease_id)
        )
        return client.transaction(
            compare=[tx.create(entry_bytes) == token, unchanged], success=[change], failure=[]
        )

    swapped, _ = await etcd.execute(swap)
    return bool(swapped)
