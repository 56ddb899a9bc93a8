from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Self, TypeVar

import grpc

from tessera.client._channel import ChannelClient
from tessera.client._rpc_errors import translated
from tessera.client.governance._entity_model import Entity, Model, Relationship
from tessera.client.governance._errors import rpc_error
from tessera.client.governance._model import (
    CompatibilityMode,
    CompatibilityReport,
    Contract,
    ContractStatus,
    Incompatibility,
    LintViolation,
    Registration,
    Rule,
    Standard,
    StandardPolicy,
    Subject,
    Validation,
)
from tessera.client.governance._scans import Scan, ScanFailedError, ScanSchedule, Table
from tessera.core import DeadlineExceededError
from tessera.proto.governance.v1 import (
    contracts_pb2,
    governance_pb2_grpc,
    model_pb2,
    rules_pb2,
    scans_pb2,
    standards_pb2,
)

T = TypeVar("T")

#: Schema given as JSON text or as parsed JSON.
SchemaInput = str | Mapping[str, Any] | bool


class GovernanceClient(ChannelClient):
    """Async client of the governance service: contracts, standards, model and validation.

    Every method raises the core error tree: `ValidationError` (bad input, with the fields),
    `NotFoundError`, `ContractRefusedError` (an incompatible version, with the reasons),
    `UnavailableError` (retryable). Safe for concurrent use from one event loop.

    Args:
        channel: A grpc.aio channel to the service.
        owns_channel: Whether `close` closes the channel.
        timeout_s: Deadline of each unary call.

    Example::

        async with GovernanceClient.connect("127.0.0.1:50054") as gov:
            contract, created = await gov.push_contract("orders", {"type": "object"})

    """

    def __init__(
        self, channel: grpc.aio.Channel, *, owns_channel: bool = False, timeout_s: float = 10.0
    ) -> None:
        super().__init__(channel, owns_channel=owns_channel)
        self._stub = governance_pb2_grpc.GovernanceStub(channel)
        self._timeout_s = timeout_s

    @classmethod
    def connect(cls, target: str, *, timeout_s: float = 10.0) -> Self:
        """Return a client on a new plain-text channel to `target` (`host:port`)."""
        return cls(grpc.aio.insecure_channel(target), owns_channel=True, timeout_s=timeout_s)

    async def push_contract(
        self,
        subject: str,
        schema: SchemaInput,
        *,
        owner: str = "",
        description: str = "",
        status: ContractStatus = "ACTIVE",
    ) -> Registration:
        """Register a schema as the next version of a subject.

        Returns:
            The stored contract, whether it is new (False: the latest version already had this
            schema), and the subject's standard's warnings.

        Raises:
            ContractRefusedError: The subject's compatibility mode, or its standard under policy
                REJECT, refuses the schema.
            ValidationError: Bad subject or schema.

        """
        response = await self._call(
            self._stub.RegisterContract(
                contracts_pb2.RegisterContractRequest(
                    subject=subject,
                    schema_json=_schema_text(schema),
                    owner=owner,
                    description=description,
                    status=contracts_pb2.ContractStatus.Value(status),
                ),
                timeout=self._timeout_s,
            )
        )
        return Registration(
            contract=Contract.from_proto(response.contract),
            created=response.created,
            warnings=[LintViolation.from_proto(w) for w in response.warnings],
        )

    async def check_contract(self, subject: str, schema: SchemaInput) -> CompatibilityReport:
        """Check whether a schema could be registered, without storing it."""
        response = await self._call(
            self._stub.CheckCompatibility(
                contracts_pb2.CheckCompatibilityRequest(
                    subject=subject, schema_json=_schema_text(schema)
                ),
                timeout=self._timeout_s,
            )
        )
        return CompatibilityReport(
            compatible=response.compatible,
            mode=contracts_pb2.CompatibilityMode.Name(response.mode),
            incompatibilities=[Incompatibility.from_proto(i) for i in response.incompatibilities],
        )

    async def get_contract(self, subject: str, version: int = 0) -> Contract:
        """Return one version of a subject (0: the latest)."""
        request = contracts_pb2.GetContractRequest(
            subject_version=contracts_pb2.SubjectVersion(subject=subject, version=version)
        )
        response = await self._call(self._stub.GetContract(request, timeout=self._timeout_s))
        return Contract.from_proto(response.contract)

    async def get_contract_by_id(self, contract_id: int) -> Contract:
        """Return the contract with this id."""
        request = contracts_pb2.GetContractRequest(id=contract_id)
        response = await self._call(self._stub.GetContract(request, timeout=self._timeout_s))
        return Contract.from_proto(response.contract)

    async def list_subjects(self) -> list[Subject]:
        """List every subject with versions, by name."""
        response = await self._call(
            self._stub.ListSubjects(contracts_pb2.ListSubjectsRequest(), timeout=self._timeout_s)
        )
        return [
            Subject(
                name=s.subject,
                latest_version=s.latest_version,
                compatibility=contracts_pb2.CompatibilityMode.Name(s.compatibility),
            )
            for s in response.subjects
        ]

    async def set_compatibility(self, subject: str, mode: CompatibilityMode) -> None:
        """Set a subject's compatibility mode."""
        await self._call(
            self._stub.SetCompatibility(
                contracts_pb2.SetCompatibilityRequest(
                    subject=subject, compatibility=contracts_pb2.CompatibilityMode.Value(mode)
                ),
                timeout=self._timeout_s,
            )
        )

    async def put_standard(self, standard: Standard) -> Standard:
        """Store a standard as its next version and return it with that version.

        Raises:
            ValidationError: A pattern does not compile, an unknown type, a bad name.

        """
        response = await self._call(
            self._stub.PutStandard(
                standards_pb2.PutStandardRequest(standard=standard.to_proto()),
                timeout=self._timeout_s,
            )
        )
        return Standard.from_proto(response.standard)

    async def lint_schema(
        self, standard: str, schema: SchemaInput, *, version: int = 0
    ) -> list[LintViolation]:
        """List every way a schema breaks a standard (version 0: the latest)."""
        response = await self._call(
            self._stub.LintSchema(
                standards_pb2.LintSchemaRequest(
                    standard=standard, version=version, schema_json=_schema_text(schema)
                ),
                timeout=self._timeout_s,
            )
        )
        return [LintViolation.from_proto(v) for v in response.violations]

    async def set_subject_standard(
        self, subject: str, standard: str | None, *, policy: StandardPolicy = "REJECT"
    ) -> None:
        """Make a subject's new versions follow a standard (None: none), rejecting or warning."""
        await self._call(
            self._stub.SetSubjectStandard(
                standards_pb2.SetSubjectStandardRequest(
                    subject=subject,
                    standard=standard or "",
                    policy=standards_pb2.StandardPolicy.Value(policy),
                ),
                timeout=self._timeout_s,
            )
        )

    async def upsert_entity(self, entity: Entity) -> None:
        """Create or replace an entity; its key fields must exist in its subject's schema."""
        await self._call(
            self._stub.UpsertEntity(
                model_pb2.UpsertEntityRequest(entity=entity.to_proto()), timeout=self._timeout_s
            )
        )

    async def upsert_relationship(self, relationship: Relationship) -> None:
        """Create or replace a relationship between existing entities."""
        await self._call(
            self._stub.UpsertRelationship(
                model_pb2.UpsertRelationshipRequest(relationship=relationship.to_proto()),
                timeout=self._timeout_s,
            )
        )

    async def get_model(self) -> Model:
        """Return every entity and relationship, and the referential checks they imply."""
        response = await self._call(
            self._stub.GetModel(model_pb2.GetModelRequest(), timeout=self._timeout_s)
        )
        return Model.from_proto(response)

    async def put_rule_set(self, name: str, rules: Sequence[Rule], *, engine: str = "") -> int:
        """Store rules as the next version of a rule set and return that version.

        Raises:
            ValidationError: A rule does not compile (the field names the rule), or bad names.

        """
        rule_set = rules_pb2.RuleSet(name=name, engine=engine, rules=[r.to_proto() for r in rules])
        response = await self._call(
            self._stub.PutRuleSet(
                rules_pb2.PutRuleSetRequest(rule_set=rule_set), timeout=self._timeout_s
            )
        )
        return response.rule_set.version

    async def validate(
        self, rule_set: str, record: Mapping[str, Any], *, version: int = 0
    ) -> Validation:
        """Evaluate one record against a rule set (version 0: the latest)."""
        response = await self._call(
            self._stub.EvaluateRecord(
                rules_pb2.EvaluateRecordRequest(
                    rule_set=rule_set, version=version, record_json=json.dumps(record).encode()
                ),
                timeout=self._timeout_s,
            )
        )
        return Validation.from_proto(response.result)

    async def validate_many(
        self,
        rule_set: str,
        records: Iterable[Mapping[str, Any]],
        *,
        version: int = 0,
        batch_size: int = 500,
    ) -> AsyncIterator[Validation]:
        """Evaluate records over one stream, in batches; yields one verdict per record, in order.

        All records are judged by the same version of the rule set, resolved at the start.
        """

        async def batches() -> AsyncIterator[rules_pb2.EvaluateBatchRequest]:
            batch: list[bytes] = []
            for record in records:
                batch.append(json.dumps(record).encode())
                if len(batch) == batch_size:
                    yield rules_pb2.EvaluateBatchRequest(
                        rule_set=rule_set, version=version, records_json=batch
                    )
                    batch = []
            if batch:
                yield rules_pb2.EvaluateBatchRequest(
                    rule_set=rule_set, version=version, records_json=batch
                )

        call = self._stub.EvaluateBatch(batches())
        try:
            async for response in call:
                for result in response.results:
                    yield Validation.from_proto(result)
        except grpc.aio.AioRpcError as error:
            raise rpc_error(error) from None

    async def start_scan(
        self,
        subject: str,
        path: str | Table,
        *,
        version: int = 0,
        rule_set: str = "",
        rule_set_version: int = 0,
        unique_fields: Sequence[str] = (),
        references: Mapping[str, str | Table] | None = None,
        freshness_field: str = "",
        freshness_sla_s: float = 0.0,
        chunk_rows: int = 0,
    ) -> str:
        """Start a scan of a file (CSV, JSON Lines or Parquet, by suffix) or a table; return its id.

        A file path is read by the workers, so it must be valid where they run. A `Table` names
        a PostgreSQL connection configured on the service and the workers.

        Args:
            subject: The contract subject.
            path: The dataset: a file path or a `Table`.
            version: The contract version; 0 is the latest.
            rule_set: A rule set to evaluate on every row ("" for none).
            rule_set_version: Its version; 0 is the latest.
            unique_fields: Fields that must not repeat (default: the entity key).
            references: Dataset (file path or `Table`) of each referenced entity, by entity name.
            freshness_field: A timestamp field whose latest value must be recent.
            freshness_sla_s: Largest allowed age of that value.
            chunk_rows: Rows per chunk; 0 for the service default.

        Raises:
            ValidationError: Missing file or table, unknown field, bad names (the field is named).
            NotFoundError: Unknown contract or rule set.

        """
        request = scan_request(
            subject,
            path,
            version=version,
            rule_set=rule_set,
            rule_set_version=rule_set_version,
            unique_fields=unique_fields,
            references=references,
            freshness_field=freshness_field,
            freshness_sla_s=freshness_sla_s,
            chunk_rows=chunk_rows,
        )
        response = await self._call(self._stub.StartScan(request, timeout=self._timeout_s))
        return response.scan_id

    async def put_scan_schedule(
        self, name: str, every_s: float, subject: str, path: str | Table, **options: Any
    ) -> ScanSchedule:
        """Have beat start a scan every `every_s` seconds (create or replace the schedule).

        The scan is checked now as `start_scan` checks it; each run takes the latest contract
        and rule set unless `options` pin versions.

        Args:
            name: The schedule's name.
            every_s: The interval, at least 1 second.
            subject: The contract subject.
            path: The dataset: a file path or a `Table`.
            **options: The keyword options of `start_scan`.

        Raises:
            ValidationError: As `start_scan`, fields under `schedule.scan.`; `schedule.every_s`.
            NotFoundError: Unknown contract or rule set.

        """
        schedule = scans_pb2.ScanSchedule(
            name=name, every_s=every_s, scan=scan_request(subject, path, **options)
        )
        response = await self._call(
            self._stub.PutScanSchedule(
                scans_pb2.PutScanScheduleRequest(schedule=schedule), timeout=self._timeout_s
            )
        )
        return ScanSchedule.from_proto(response.schedule)

    async def list_scan_schedules(self) -> list[ScanSchedule]:
        """List every scan schedule, by name."""
        response = await self._call(
            self._stub.ListScanSchedules(
                scans_pb2.ListScanSchedulesRequest(), timeout=self._timeout_s
            )
        )
        return [ScanSchedule.from_proto(schedule) for schedule in response.schedules]

    async def delete_scan_schedule(self, name: str) -> bool:
        """Delete a scan schedule; whether it existed. Scans it started stay."""
        response = await self._call(
            self._stub.DeleteScanSchedule(
                scans_pb2.DeleteScanScheduleRequest(name=name), timeout=self._timeout_s
            )
        )
        return response.deleted

    async def get_scan(self, scan_id: str) -> Scan:
        """Return a scan's state, progress and (once it succeeded) report."""
        response = await self._call(
            self._stub.GetScan(scans_pb2.GetScanRequest(scan_id=scan_id), timeout=self._timeout_s)
        )
        return Scan.from_proto(response.scan)

    async def list_scans(self) -> list[Scan]:
        """List every scan, newest first, without reports."""
        response = await self._call(
            self._stub.ListScans(scans_pb2.ListScansRequest(), timeout=self._timeout_s)
        )
        return [Scan.from_proto(scan) for scan in response.scans]

    async def wait_for_scan(
        self,
        scan_id: str,
        *,
        on_progress: Callable[[int], object] | None = None,
        poll_s: float = 0.5,
        timeout_s: float | None = None,
    ) -> Scan:
        """Poll a scan until it finishes; call `on_progress(rows_done)` whenever that changes.

        Returns:
            The SUCCEEDED scan, with its report.

        Raises:
            ScanFailedError: The scan ended FAILED.
            DeadlineExceededError: Not finished within `timeout_s` (retryable).

        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        reported = -1
        while True:
            scan = await self.get_scan(scan_id)
            if on_progress is not None and scan.rows_done != reported:
                reported = scan.rows_done
                on_progress(reported)
            if scan.state == "FAILED":
                raise ScanFailedError(scan)
            if scan.state == "SUCCEEDED":
                return scan
            if deadline is not None and time.monotonic() > deadline:
                raise DeadlineExceededError(
                    f"scan {scan_id} not finished within {timeout_s} s", retryable=True
                )
            await asyncio.sleep(poll_s)

    @staticmethod
    async def _call(call: Awaitable[T]) -> T:
        return await translated(call, rpc_error)


def scan_request(
    subject: str,
    path: str | Table,
    *,
    version: int = 0,
    rule_set: str = "",
    rule_set_version: int = 0,
    unique_fields: Sequence[str] = (),
    references: Mapping[str, str | Table] | None = None,
    freshness_field: str = "",
    freshness_sla_s: float = 0.0,
    chunk_rows: int = 0,
) -> scans_pb2.StartScanRequest:
    """Build a `StartScanRequest` (arguments as `GovernanceClient.start_scan`)."""
    return scans_pb2.StartScanRequest(
        dataset=_dataset(path),
        subject=subject,
        version=version,
        rule_set=rule_set,
        rule_set_version=rule_set_version,
        unique_fields=unique_fields,
        references=[
            scans_pb2.ReferencedDataset(entity=entity, dataset=_dataset(parent))
            for entity, parent in (references or {}).items()
        ],
        freshness_field=freshness_field,
        freshness_sla_s=freshness_sla_s,
        chunk_rows=chunk_rows,
    )


def _dataset(source: str | Table) -> scans_pb2.Dataset:
    if isinstance(source, Table):
        return source.to_proto()
    return scans_pb2.Dataset(file=scans_pb2.FileDataset(path=source))


def _schema_text(schema: SchemaInput) -> str:
    return schema if isinstance(schema, str) else json.dumps(schema)
