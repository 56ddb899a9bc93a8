from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: A key or prefix: bytes, or text encoded as UTF-8.
Key = bytes | str


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key as etcd stores it.

    Attributes:
        key: The key.
        value: Its value.
        create_revision: Revision of the write that created the key (lock ownership orders by it).
        mod_revision: Revision of the last write to the key.
        version: Writes since creation (1 right after creation).
        lease: ID of the lease the key is attached to, 0 for none.

    """

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @classmethod
    def from_proto(cls, kv: Any) -> KeyValue:
        """Copy an `mvccpb.KeyValue` message (aetcd's `rpc.KeyValue`)."""
        return cls(
            key=kv.key,
            value=kv.value,
            create_revision=kv.create_revision,
            mod_revision=kv.mod_revision,
            version=kv.version,
            lease=kv.lease,
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every key under a prefix as of one revision.

    Attributes:
        revision: The store revision the snapshot was read at; changes after it have greater
            revisions.
        items: The keys, in key order.

    """

    revision: int
    items: tuple[KeyValue, ...]

    def as_dict(self) -> dict[bytes, bytes]:
        """Return the snapshot as `{key: value}`."""
        return {item.key: item.value for item in self.items}


def prefix_end(prefix: bytes) -> bytes:
    """Return the `range_end` that makes a range cover every key starting with `prefix`."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    # Empty prefix, or only 0xff bytes: etcd reads "\0" as "to the end of the keyspace".
    return b"\0"


def key_bytes(text: bytes | str) -> bytes:
    """Return a key as bytes, encoding text as UTF-8."""
    return text if isinstance(text, bytes) else text.encode()
