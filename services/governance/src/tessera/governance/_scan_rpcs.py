from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import Any

from celery import Celery
from google.protobuf import json_format

from tessera.core import BackendError, ValidationError
from tessera.core.jobs import WorkerSettings, create_celery_app
from tessera.core.server import ServicerContext
from tessera.governance._contract_store import ContractStore
from tessera.governance._entity_model import referential_checks
from tessera.governance._model_store import ModelStore
from tessera.governance._rule_set_store import RuleSetStore
from tessera.governance._scan_datasets import FORMATS, file_format
from tessera.governance._scan_engine import Reference, ScanSpec
from tessera.governance._scan_fields import field_checks
from tessera.governance._scan_store import ScanStore
from tessera.governance._schema import check_name
from tessera.governance._settings import GovernanceSettings
from tessera.governance.jobs import SCAN_TASK
from tessera.proto.governance.v1 import scans_pb2 as pb

_MAX_CHUNK_ROWS = 1_000_000


class ScanRpcs:
    """The scan part of the Governance servicer: start scans, read progress and reports.

    StartScan resolves everything a worker needs (contract schema, rule set, referential checks)
    at that moment and stores it with the scan, so the scan checks exactly those versions.

    Args:
        scans: Where scans live.
        contracts: For the contract.
        rule_sets: For the rule set.
        model: For unique keys and referential checks.
        settings: Chunk and sample sizes, and the broker to send jobs through.

    """

    def __init__(
        self,
        scans: ScanStore,
        contracts: ContractStore,
        rule_sets: RuleSetStore,
        model: ModelStore,
        settings: GovernanceSettings,
    ) -> None:
        self._scans = scans
        self._scan_contracts = contracts
        self._scan_rule_sets = rule_sets
        self._scan_model = model
        self._scan_settings = settings
        self._producer: Celery | None = None

    async def StartScan(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.StartScanRequest, context: ServicerContext
    ) -> pb.StartScanResponse:
        """Check the request, store the scan PENDING and send it to queue `governance`."""
        path, fmt = await _file("dataset", request.dataset)
        subject = check_name("subject", request.subject)
        contract = await self._scan_contracts.get(subject, request.version)
        declared = {check.name for check in field_checks(contract.schema)}
        rule_set = None
        if request.rule_set:
            check_name("rule_set", request.rule_set)
            rule_set = await self._scan_rule_sets.get(request.rule_set, request.rule_set_version)
        model = await self._scan_model.snapshot()
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
            parent_path, parent_format = await _file(f"{where}.dataset", given.dataset)
            references.extend(
                Reference(
                    relationship=check.relationship,
                    child_fields=check.child_fields,
                    parent_entity=check.parent_entity,
                    parent_fields=check.parent_fields,
                    unique=check.unique,
                    path=parent_path,
                    file_format=parent_format,
                )
                for check in found
            )
        chunk_rows = request.chunk_rows or self._scan_settings.scan_chunk_rows
        if chunk_rows > _MAX_CHUNK_ROWS:
            raise ValidationError.for_field("chunk_rows", f"is over {_MAX_CHUNK_ROWS}")
        spec = ScanSpec(
            path=path,
            file_format=fmt,
            subject=subject,
            version=contract.version,
            schema_json=contract.schema_json,
            rule_set=rule_set,
            unique_fields=unique,
            references=tuple(references),
            freshness_field=request.freshness_field,
            freshness_sla_s=request.freshness_sla_s,
            chunk_rows=chunk_rows,
            sample_rows=self._scan_settings.scan_sample_rows,
        )
        scan_id = uuid.uuid4().hex
        summary = {
            "subject": subject,
            "version": contract.version,
            "rule_set": rule_set.name if rule_set else "",
            "rule_set_version": rule_set.version if rule_set else 0,
            "dataset": f"file:{path}",
        }
        await self._scans.create(scan_id, summary, spec.to_dict())
        try:
            await asyncio.to_thread(self._send, scan_id)
        except BackendError as error:
            await self._scans.fail_unsent(scan_id, error.message)
            raise
        return pb.StartScanResponse(scan_id=scan_id)

    async def GetScan(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.GetScanRequest, context: ServicerContext
    ) -> pb.GetScanResponse:
        """Return a scan's state, progress and (once it succeeded) report."""
        if not request.scan_id:
            raise ValidationError.for_field("scan_id", "must not be empty")
        return pb.GetScanResponse(scan=scan_message(await self._scans.get(request.scan_id)))

    async def ListScans(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.ListScansRequest, context: ServicerContext
    ) -> pb.ListScansResponse:
        """List every scan, newest first, without reports."""
        records = await self._scans.list()
        return pb.ListScansResponse(
            scans=[scan_message({**record, "report": None}) for record in records]
        )

    def _send(self, scan_id: str) -> None:
        # Runs in a thread: kombu's publish blocks.
        if self._producer is None:
            self._producer = create_celery_app(
                WorkerSettings(redis_url=self._scan_settings.redis_url), queues=()
            )
        try:
            self._producer.send_task(SCAN_TASK, args=[scan_id])
        except Exception as error:  # kombu raises many kinds; all mean the broker failed
            raise BackendError(
                f"could not queue scan {scan_id}: {error}", backend="redis"
            ) from error


async def _file(field: str, dataset: pb.Dataset) -> tuple[str, str]:
    if not dataset.HasField("file") or not dataset.file.path:
        raise ValidationError.for_field(f"{field}.file.path", "must name a file")
    path = dataset.file.path
    fmt = pb.FileFormat.Name(dataset.file.format)
    fmt = file_format(path, "" if fmt == "FILE_FORMAT_UNSPECIFIED" else fmt)
    if fmt not in FORMATS:
        raise ValidationError.for_field(f"{field}.file.format", f"unknown format {fmt}")
    if not await asyncio.to_thread(os.path.isfile, path):
        raise ValidationError.for_field(f"{field}.file.path", f"no such file: '{path}'")
    return path, fmt


def scan_message(record: dict[str, Any]) -> pb.Scan:
    """Build a `Scan` message from a stored scan record."""
    report = record.get("report")
    message = pb.Scan(
        scan_id=record["scan_id"],
        state=pb.ScanState.Value(f"SCAN_{record['state']}"),
        rows_done=record["rows_done"],
        attempt=record["attempt"],
        error=record["error"],
        subject=record["subject"],
        version=record["version"],
        rule_set=record["rule_set"],
        rule_set_version=record["rule_set_version"],
        dataset=record["dataset"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
    )
    if report is not None:
        shown = {**report, "freshness": report["freshness"] or {}}
        json_format.ParseDict(json.loads(json.dumps(shown)), message.report)
    return message
