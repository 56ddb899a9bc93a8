from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote

from aetcd import transactions

from tessera.core import AbortedError, NotFoundError
from tessera.core.etcd import EtcdClient, KeyValue
from tessera.governance import _keys
from tessera.governance._compatibility import CompatibilityMode
from tessera.governance._schema import JsonSchema
from tessera.governance._transactions import commit

# Concurrent registrations on one etcd lose compare-and-swap races; a few retries settle them.
_RACE_ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class StoredContract:
    """One stored version of a subject's contract (the JSON value of its etcd key).

    Attributes:
        id: Globally unique id.
        subject: The subject.
        version: 1, 2, ... within the subject.
        schema_json: The JSON Schema as registered.
        owner: Who answers for it.
        description: Free text.
        status: `DRAFT`, `ACTIVE` or `DEPRECATED`.

    """

    id: int
    subject: str
    version: int
    schema_json: str
    owner: str
    description: str
    status: str

    @property
    def schema(self) -> JsonSchema:
        """The parsed schema."""
        parsed: JsonSchema = json.loads(self.schema_json)
        return parsed


@dataclass(frozen=True, slots=True)
class SubjectState:
    """What one consistent read of a subject found.

    Attributes:
        mode: The subject's compatibility mode, or None when it has none of its own.
        standard: The standard new versions must follow, or None.
        standard_policy: `REJECT` or `WARN`: what breaking the standard does.
        versions: Its versions, oldest first.
        config: The raw config key (for compare-and-swap), None when absent.

    """

    mode: CompatibilityMode | None
    standard: str | None
    standard_policy: str
    versions: tuple[StoredContract, ...]
    config: KeyValue | None


@dataclass(frozen=True, slots=True)
class NewContract:
    """What a caller asks to register."""

    subject: str
    schema_json: str
    owner: str
    description: str
    status: str


#: Awaited with the subject's state before a new version is stored; raises to refuse it.
Checker = Callable[[SubjectState], Awaitable[None]]


class ContractStore:
    """Subjects and their versioned contracts in etcd under `/tessera/governance/`.

    Versions and ids are allocated in one etcd transaction with the version itself, conditioned
    on the id counter, the subject's config and the new version's key being unchanged since the
    read; so concurrent registrations never share an id or a version, and a version is only
    stored after it was checked against the exact state it lands on.

    Args:
        etcd: A connected client; shared, safe for concurrent use from one event loop.
        default_mode: The mode of subjects that have none of their own.

    """

    def __init__(self, etcd: EtcdClient, default_mode: CompatibilityMode) -> None:
        self._etcd = etcd
        self.default_mode = default_mode

    async def subject(self, subject: str) -> SubjectState:
        """Read a subject's mode and versions at one revision (empty when unknown)."""
        snapshot = await self._etcd.get_prefix(_keys.subject_prefix(subject))
        config_key = _keys.subject_config(subject).encode()
        config: KeyValue | None = None
        versions: list[StoredContract] = []
        for item in snapshot.items:
            if item.key == config_key:
                config = item
            else:
                versions.append(StoredContract(**json.loads(item.value)))
        settings: dict[str, Any] = json.loads(config.value) if config else {}
        mode = settings.get("compatibility")
        return SubjectState(
            mode=CompatibilityMode(mode) if mode else None,
            standard=settings.get("standard"),
            standard_policy=settings.get("standard_policy", "REJECT"),
            versions=tuple(versions),
            config=config,
        )

    async def register(
        self, new: NewContract, same_schema: Callable[[str, str], bool], check: Checker
    ) -> tuple[StoredContract, bool]:
        """Store a new version unless the latest has the same schema or `check` refuses it.

        Args:
            new: The contract to store.
            same_schema: Whether two schema texts are the same schema.
            check: Awaited with the subject's state; raising refuses the registration.

        Returns:
            The stored contract, and True when it was created (False: the latest version already
            had this schema and is returned unchanged).

        Raises:
            AbortedError: Lost the allocation race too many times in a row (retryable).
            BackendError: etcd failed.

        """
        for _ in range(_RACE_ATTEMPTS):
            state = await self.subject(new.subject)
            if state.versions and same_schema(state.versions[-1].schema_json, new.schema_json):
                return state.versions[-1], False
            await check(state)
            stored = await self._try_store(new, state)
            if stored is not None:
                return stored, True
        raise AbortedError("too many concurrent registrations on this subject; retry")

    async def _try_store(self, new: NewContract, state: SubjectState) -> StoredContract | None:
        counter = await self._etcd.get(_keys.CONTRACT_ID_COUNTER)
        next_id = int(counter.value) if counter else 1
        version = state.versions[-1].version + 1 if state.versions else 1
        contract = StoredContract(id=next_id, version=version, **asdict(new))
        version_key = _keys.contract_version(new.subject, version)
        config_key = _keys.subject_config(new.subject)
        compare = [
            _unchanged(_keys.CONTRACT_ID_COUNTER, counter),
            _unchanged(config_key, state.config),
            transactions.Version(version_key) == 0,
        ]
        success = [
            transactions.Put(_keys.CONTRACT_ID_COUNTER.encode(), str(next_id + 1).encode()),
            transactions.Put(version_key.encode(), json.dumps(asdict(contract)).encode()),
            transactions.Put(
                _keys.contract_id(next_id).encode(),
                json.dumps({"subject": new.subject, "version": version}).encode(),
            ),
        ]
        succeeded = await commit(self._etcd, compare, success)
        return contract if succeeded else None

    async def get(self, subject: str, version: int) -> StoredContract:
        """Return one version of a subject; version 0 is the latest.

        Raises:
            NotFoundError: No such subject or version.

        """
        if version == 0:
            state = await self.subject(subject)
            if not state.versions:
                raise NotFoundError(f"subject '{subject}' has no versions")
            return state.versions[-1]
        item = await self._etcd.get(_keys.contract_version(subject, version))
        if item is None:
            raise NotFoundError(f"subject '{subject}' has no version {version}")
        return StoredContract(**json.loads(item.value))

    async def get_by_id(self, contract_id: int) -> StoredContract:
        """Return the contract with this id.

        Raises:
            NotFoundError: No contract has this id.

        """
        item = await self._etcd.get(_keys.contract_id(contract_id))
        if item is None:
            raise NotFoundError(f"no contract has id {contract_id}")
        where: dict[str, Any] = json.loads(item.value)
        return await self.get(where["subject"], where["version"])

    async def subjects(self) -> list[tuple[str, int, CompatibilityMode]]:
        """List `(subject, latest version, mode)` for every subject with versions, by name."""
        snapshot = await self._etcd.get_prefix(_keys.SUBJECTS)
        latest: dict[str, int] = {}
        modes: dict[str, CompatibilityMode] = {}
        for item in snapshot.items:
            value = json.loads(item.value)
            if item.key.endswith(b"/config"):
                if "compatibility" in value:
                    modes[_subject_of(item.key)] = CompatibilityMode(value["compatibility"])
            else:
                latest[value["subject"]] = value["version"]
        return [
            (subject, version, modes.get(subject, self.default_mode))
            for subject, version in sorted(latest.items())
        ]

    async def set_mode(self, subject: str, mode: CompatibilityMode) -> None:
        """Set a subject's compatibility mode; later registrations are checked with it."""
        await self._update_config(subject, {"compatibility": mode.value})

    async def set_standard(self, subject: str, standard: str | None, policy: str) -> None:
        """Make a subject's new versions follow a standard (None: none) with a policy."""
        await self._update_config(subject, {"standard": standard, "standard_policy": policy})

    async def _update_config(self, subject: str, changes: dict[str, Any]) -> None:
        # Read-modify-write under compare-and-swap, so that setting the mode and the standard
        # at the same time keeps both.
        key = _keys.subject_config(subject)
        for _ in range(_RACE_ATTEMPTS):
            current = await self._etcd.get(key)
            settings = json.loads(current.value) if current else {}
            settings.update(changes)
            put = transactions.Put(key.encode(), json.dumps(settings).encode())
            if await commit(self._etcd, [_unchanged(key, current)], [put]):
                return
        raise AbortedError(f"too many concurrent changes to subject '{subject}'; retry")


def _unchanged(key: str, seen: KeyValue | None) -> Any:
    """Build a transaction compare: `key` is as it was read (absent stays absent)."""
    if seen is None:
        return transactions.Version(key) == 0
    return transactions.Mod(key) == seen.mod_revision


def _subject_of(key: bytes) -> str:
    return unquote(key.decode()[len(_keys.SUBJECTS) :].split("/", 1)[0])
