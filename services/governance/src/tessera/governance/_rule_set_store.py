from __future__ import annotations

import dataclasses

from tessera.core.etcd import EtcdClient
from tessera.governance import _keys
from tessera.governance._rule_sets import RuleSetSpec
from tessera.governance._versioned import VersionedDocuments


class RuleSetStore:
    """Versioned rule sets in etcd under `/tessera/governance/rulesets/` (see `VersionedDocuments`).

    Args:
        etcd: A connected client; safe for concurrent use from one event loop.

    """

    def __init__(self, etcd: EtcdClient) -> None:
        self._documents = VersionedDocuments(etcd, _keys.RULE_SETS, "rule set")

    async def put(self, spec: RuleSetSpec) -> RuleSetSpec:
        """Store `spec` as the next version of its rule set and return it with that version.

        Raises:
            AbortedError: Lost the version race too many times in a row (retryable).
            BackendError: etcd failed.

        """
        version = await self._documents.put(
            spec.name, lambda version: dataclasses.replace(spec, version=version).to_json()
        )
        return dataclasses.replace(spec, version=version)

    async def latest_version(self, name: str) -> int:
        """Return the latest version of a rule set.

        Raises:
            NotFoundError: No such rule set.

        """
        return await self._documents.latest_version(name)

    async def get(self, name: str, version: int) -> RuleSetSpec:
        """Return one version of a rule set; version 0 is the latest.

        Raises:
            NotFoundError: No such rule set or version.

        """
        return RuleSetSpec.from_json(await self._documents.get(name, version))
