from __future__ import annotations

import dataclasses

from tessera.core.etcd import EtcdClient
from tessera.governance import _keys
from tessera.governance._standards import Standard
from tessera.governance._versioned import VersionedDocuments


class StandardStore:
    """Versioned standards in etcd under `/tessera/governance/standards/`.

    See `VersionedDocuments` for versioning and concurrency.

    Args:
        etcd: A connected client; safe for concurrent use from one event loop.

    """

    def __init__(self, etcd: EtcdClient) -> None:
        self._documents = VersionedDocuments(etcd, _keys.STANDARDS, "standard")

    async def put(self, standard: Standard) -> Standard:
        """Store `standard` as its next version and return it with that version.

        Raises:
            AbortedError: Lost the version race too many times in a row (retryable).
            BackendError: etcd failed.

        """
        version = await self._documents.put(
            standard.name,
            lambda version: dataclasses.replace(standard, version=version).to_json(),
        )
        return dataclasses.replace(standard, version=version)

    async def get(self, name: str, version: int) -> Standard:
        """Return one version of a standard; version 0 is the latest.

        Raises:
            NotFoundError: No such standard or version.

        """
        return Standard.from_json(await self._documents.get(name, version))
