from __future__ import annotations

from collections.abc import Callable

from aetcd import transactions

from tessera.core import AbortedError, NotFoundError
from tessera.core.etcd import EtcdClient
from tessera.governance import _keys
from tessera.governance._transactions import commit

# Concurrent writers of one document lose compare-and-swap races; a few retries settle them.
_RACE_ATTEMPTS = 8


class VersionedDocuments:
    """Named documents with immutable, numbered versions in etcd (rule sets, standards).

    Version `n` of `name` lives at `<prefix><name>/versions/<n>`; `<prefix><name>/latest` holds
    the newest number. A write stores the next version and moves `latest` in one transaction,
    on condition that `latest` is unchanged since it was read, so concurrent writers never share
    a version.

    Args:
        etcd: A connected client; safe for concurrent use from one event loop.
        prefix: The kind's key prefix, e.g. `_keys.RULE_SETS`.
        kind: What the documents are, for error messages (`"rule set"`).

    """

    def __init__(self, etcd: EtcdClient, prefix: str, kind: str) -> None:
        self._etcd = etcd
        self._prefix = prefix
        self._kind = kind

    async def put(self, name: str, encode: Callable[[int], bytes]) -> int:
        """Store `encode(version)` as the next version of `name` and return that version.

        Raises:
            AbortedError: Lost the version race too many times in a row (retryable).
            BackendError: etcd failed.

        """
        latest_key = _keys.document_latest(self._prefix, name)
        for _ in range(_RACE_ATTEMPTS):
            latest = await self._etcd.get(latest_key)
            version = int(latest.value) + 1 if latest else 1
            unchanged = (
                transactions.Mod(latest_key) == latest.mod_revision
                if latest
                else transactions.Version(latest_key) == 0
            )
            success = [
                transactions.Put(
                    _keys.document_version(self._prefix, name, version).encode(), encode(version)
                ),
                transactions.Put(latest_key.encode(), str(version).encode()),
            ]
            succeeded = await commit(self._etcd, [unchanged], success)
            if succeeded:
                return version
        raise AbortedError(f"too many concurrent writes to {self._kind} '{name}'; retry")

    async def latest_version(self, name: str) -> int:
        """Return the newest version of `name`.

        Raises:
            NotFoundError: No such document.

        """
        latest = await self._etcd.get(_keys.document_latest(self._prefix, name))
        if latest is None:
            raise NotFoundError(f"no {self._kind} named '{name}'")
        return int(latest.value)

    async def get(self, name: str, version: int) -> bytes:
        """Return the stored bytes of one version (0: the latest).

        Raises:
            NotFoundError: No such document or version.

        """
        if version == 0:
            version = await self.latest_version(name)
        item = await self._etcd.get(_keys.document_version(self._prefix, name, version))
        if item is None:
            raise NotFoundError(f"{self._kind} '{name}' has no version {version}")
        return item.value
