"""StartScanRequest to ScanSpec: everything a worker needs, resolved when a scan starts."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from tessera.core import ValidationError
from tessera.governance._contract_store import ContractStore
from tessera.governance._entity_model import referential_checks
from tessera.governance._model_store import ModelStore
from tessera.governance._rule_set_store import RuleSetStore
from tessera.governance._scan_datasets import FORMATS, TABLE, Dataset, file_format
from tessera.governance._scan_engine import Reference, ScanSpec
from tessera.governance._scan_fields import field_checks
from tessera.governance._scan_tables import connection_dsn, describe_table
from tessera.governance._schema import check_name
from tessera.proto.governance.v1 import scans_pb2 as pb

#: Most rows one chunk of a scan may hold.
MAX_CHUNK_ROWS = 1_000_000


@dataclass(frozen=True, slots=True)
class ResolvedScan:
    """A checked scan request.

    Attributes:
        spec: What the worker runs.
        summary: What `GetScan` shows besides the state (subject, versions, dataset).

    """

    spec: ScanSpec
    summary: dict[str, Any]


class ScanRequests:
    """Checks a `StartScanRequest` and resolves it against the stores, as of now.

    Used by StartScan in the service and by scheduled runs in the workers, so both check the
    same things. Reads only; stores nothing.

    Args:
        contracts: For the contract.
        rule_sets: For the rule set.
        model: For unique keys and referential checks.
        connections: PostgreSQL connections (name -> DSN) for table datasets.
        chunk_rows: Rows per chunk when the request names none.
        sample_rows: Failing rows a report keeps.

    """

    def __init__(
        self,
        contracts: ContractStore,
        rule_sets: RuleSetStore,
        model: ModelStore,
        connections: Mapping[str, SecretStr],
        chunk_rows: int,
        sample_rows: int,
    ) -> None:
        self._contracts = contracts
        self._rule_sets = rule_sets
        self._model = model
        self._connections = connections
        self._chunk_rows = chunk_rows
        self._sample_rows = sample_rows

    async def resolve(self, request: pb.StartScanRequest) -> ResolvedScan:
        """Check a request and resolve versions, keys and referential checks.

        Raises:
            ValidationError: Bad input, naming the field (no such file or table, unknown field).
            NotFoundError: No such contract or rule set.
            BackendError: etcd or a table's database cannot be reached.

        """
        dataset = await self.dataset("dataset", request.dataset)
        subject = check_name("subject", request.subject)
        contract = await self._contracts.get(subject, request.version)
        declared = {check.name for check in field_checks(contract.schema)}
        rule_set = None
        if request.rule_set:
            check_name("rule_set", request.rule_set)
            rule_set = await self._rule_sets.get(request.rule_set, request.rule_set_version)
        model = await self._model.snapshot()
        entity = next((e for e in model.entities.values() if e.subject == subject), None)
        unique = tuple(request.unique_fields) or (entity.key if entity else ())
        for index, name in enumerate(request.unique_fields):
            if name not in declared:
                raise ValidationError.for_field(
                    f"unique_fields[{index}]", f"'{name}' is not a field of the contract"
                )
        if request.freshness_field and request.freshness_field not in declared:
            raise ValidationError.for_field(
                "freshness_field", f"'{request.freshness_field}' is not a field of the contract"
            )
        references: list[Reference] = []
        checks = referential_checks(model.relationships, model.entities)
        for index, given in enumerate(request.references):
            where = f"references[{index}]"
            found = [
                check
                for check in checks
                if entity is not None
                and check.child_entity == entity.name
                and check.parent_entity == given.entity
            ]
            if not found:
                raise ValidationError.for_field(
                    f"{where}.entity",
                    f"no relationship of the model makes the entity of '{subject}' "
                    f"reference '{given.entity}'",
                )
            parent = await self.dataset(f"{where}.dataset", given.dataset)
            references.extend(
                Reference(
                    relationship=check.relationship,
                    child_fields=check.child_fields,
                    parent_entity=check.parent_entity,
                    parent_fields=check.parent_fields,
                    unique=check.unique,
                    path=parent.path,
                    file_format=parent.file_format,
                    table=parent.table,
                )
                for check in found
            )
        chunk_rows = request.chunk_rows or self._chunk_rows
        if chunk_rows > MAX_CHUNK_ROWS:
            raise ValidationError.for_field("chunk_rows", f"is over {MAX_CHUNK_ROWS}")
        spec = ScanSpec(
            path=dataset.path,
            file_format=dataset.file_format,
            subject=subject,
            version=contract.version,
            schema_json=contract.schema_json,
            rule_set=rule_set,
            unique_fields=unique,
            references=tuple(references),
            freshness_field=request.freshness_field,
            freshness_sla_s=request.freshness_sla_s,
            chunk_rows=chunk_rows,
            sample_rows=self._sample_rows,
            table=dataset.table,
        )
        summary = {
            "subject": subject,
            "version": contract.version,
            "rule_set": rule_set.name if rule_set else "",
            "rule_set_version": rule_set.version if rule_set else 0,
            "dataset": dataset.describe(),
        }
        return ResolvedScan(spec, summary)

    async def dataset(self, field: str, dataset: pb.Dataset) -> Dataset:
        """Check a dataset: the file exists here, or the table exists with a primary key.

        Raises:
            ValidationError: Naming `<field>.file.path`, `<field>.file.format`,
                `<field>.table.connection` or `<field>.table.table`.
            BackendError: The table's database cannot be reached.

        """
        if dataset.HasField("table"):
            table = dataset.table
            where = f"{field}.table"
            if not table.table:
                raise ValidationError.for_field(f"{where}.table", "must name a table")
            dsn = connection_dsn(self._connections, table.connection, f"{where}.connection")
            source = await describe_table(
                dsn, table.connection, table.schema or "public", table.table, f"{where}.table"
            )
            return Dataset("", TABLE, source)
        if not dataset.HasField("file") or not dataset.file.path:
            raise ValidationError.for_field(f"{field}.file.path", "must name a file or a table")
        path = dataset.file.path
        fmt = pb.FileFormat.Name(dataset.file.format)
        fmt = file_format(path, "" if fmt == "FILE_FORMAT_UNSPECIFIED" else fmt)
        if fmt not in FORMATS:
            raise ValidationError.for_field(f"{field}.file.format", f"unknown format {fmt}")
        if not await asyncio.to_thread(os.path.isfile, path):
            raise ValidationError.for_field(f"{field}.file.path", f"no such file: '{path}'")
        return Dataset(path, fmt)
