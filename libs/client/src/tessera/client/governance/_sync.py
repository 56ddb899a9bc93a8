from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from tessera.client._sync_facade import SyncFacade
from tessera.client.governance._client import GovernanceClient, SchemaInput
from tessera.client.governance._entity_model import Entity, Model, Relationship
from tessera.client.governance._model import (
    CompatibilityMode,
    CompatibilityReport,
    Contract,
    ContractStatus,
    LintViolation,
    Registration,
    Rule,
    Standard,
    StandardPolicy,
    Subject,
    Validation,
)
from tessera.client.governance._scans import Scan, ScanSchedule, Table


class SyncGovernanceClient(SyncFacade[GovernanceClient]):
    """Blocking facade over `GovernanceClient`, for scripts and code without an event loop.

    The async client runs on an event loop in a daemon thread owned by this object. Methods,
    arguments and errors are those of `GovernanceClient`. Thread-safe.

    Args:
        target: The governance service, `host:port`.
        timeout_s: Deadline of each unary call.

    Example::

        with SyncGovernanceClient("127.0.0.1:50054") as gov:
            report = gov.check_contract("orders", schema)

    """

    def __init__(self, target: str, *, timeout_s: float = 10.0) -> None:
        super().__init__(
            lambda: GovernanceClient.connect(target, timeout_s=timeout_s),
            thread_name="tessera-governance-client",
        )

    def push_contract(
        self,
        subject: str,
        schema: SchemaInput,
        *,
        owner: str = "",
        description: str = "",
        status: ContractStatus = "ACTIVE",
    ) -> Registration:
        """See `GovernanceClient.push_contract`."""
        return self._run(
            self._client.push_contract(
                subject, schema, owner=owner, description=description, status=status
            )
        )

    def check_contract(self, subject: str, schema: SchemaInput) -> CompatibilityReport:
        """See `GovernanceClient.check_contract`."""
        return self._run(self._client.check_contract(subject, schema))

    def get_contract(self, subject: str, version: int = 0) -> Contract:
        """See `GovernanceClient.get_contract`."""
        return self._run(self._client.get_contract(subject, version))

    def get_contract_by_id(self, contract_id: int) -> Contract:
        """See `GovernanceClient.get_contract_by_id`."""
        return self._run(self._client.get_contract_by_id(contract_id))

    def list_subjects(self) -> list[Subject]:
        """See `GovernanceClient.list_subjects`."""
        return self._run(self._client.list_subjects())

    def set_compatibility(self, subject: str, mode: CompatibilityMode) -> None:
        """See `GovernanceClient.set_compatibility`."""
        self._run(self._client.set_compatibility(subject, mode))

    def put_standard(self, standard: Standard) -> Standard:
        """See `GovernanceClient.put_standard`."""
        return self._run(self._client.put_standard(standard))

    def lint_schema(
        self, standard: str, schema: SchemaInput, *, version: int = 0
    ) -> list[LintViolation]:
        """See `GovernanceClient.lint_schema`."""
        return self._run(self._client.lint_schema(standard, schema, version=version))

    def set_subject_standard(
        self, subject: str, standard: str | None, *, policy: StandardPolicy = "REJECT"
    ) -> None:
        """See `GovernanceClient.set_subject_standard`."""
        self._run(self._client.set_subject_standard(subject, standard, policy=policy))

    def upsert_entity(self, entity: Entity) -> None:
        """See `GovernanceClient.upsert_entity`."""
        self._run(self._client.upsert_entity(entity))

    def upsert_relationship(self, relationship: Relationship) -> None:
        """See `GovernanceClient.upsert_relationship`."""
        self._run(self._client.upsert_relationship(relationship))

    def get_model(self) -> Model:
        """See `GovernanceClient.get_model`."""
        return self._run(self._client.get_model())

    def put_rule_set(self, name: str, rules: Sequence[Rule], *, engine: str = "") -> int:
        """See `GovernanceClient.put_rule_set`."""
        return self._run(self._client.put_rule_set(name, rules, engine=engine))

    def validate(self, rule_set: str, record: Mapping[str, Any], *, version: int = 0) -> Validation:
        """See `GovernanceClient.validate`."""
        return self._run(self._client.validate(rule_set, record, version=version))

    def validate_many(
        self,
        rule_set: str,
        records: Iterable[Mapping[str, Any]],
        *,
        version: int = 0,
        batch_size: int = 500,
    ) -> list[Validation]:
        """See `GovernanceClient.validate_many`; returns every verdict at once, in order."""

        async def collect() -> list[Validation]:
            stream = self._client.validate_many(
                rule_set, records, version=version, batch_size=batch_size
            )
            return [validation async for validation in stream]

        return self._run(collect())

    def start_scan(self, subject: str, path: str | Table, **options: Any) -> str:
        """See `GovernanceClient.start_scan` (same keyword options)."""
        return self._run(self._client.start_scan(subject, path, **options))

    def put_scan_schedule(
        self, name: str, every_s: float, subject: str, path: str | Table, **options: Any
    ) -> ScanSchedule:
        """See `GovernanceClient.put_scan_schedule` (same keyword options)."""
        return self._run(self._client.put_scan_schedule(name, every_s, subject, path, **options))

    def list_scan_schedules(self) -> list[ScanSchedule]:
        """See `GovernanceClient.list_scan_schedules`."""
        return self._run(self._client.list_scan_schedules())

    def delete_scan_schedule(self, name: str) -> bool:
        """See `GovernanceClient.delete_scan_schedule`."""
        return self._run(self._client.delete_scan_schedule(name))

    def get_scan(self, scan_id: str) -> Scan:
        """See `GovernanceClient.get_scan`."""
        return self._run(self._client.get_scan(scan_id))

    def list_scans(self) -> list[Scan]:
        """See `GovernanceClient.list_scans`."""
        return self._run(self._client.list_scans())

    def wait_for_scan(
        self,
        scan_id: str,
        *,
        on_progress: Callable[[int], object] | None = None,
        poll_s: float = 0.5,
        timeout_s: float | None = None,
    ) -> Scan:
        """See `GovernanceClient.wait_for_scan`; `on_progress` runs on the client's thread."""
        return self._run(
            self._client.wait_for_scan(
                scan_id, on_progress=on_progress, poll_s=poll_s, timeout_s=timeout_s
            )
        )
