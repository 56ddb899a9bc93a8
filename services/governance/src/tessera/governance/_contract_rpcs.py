from __future__ import annotations

import json

from tessera.core import ValidationError
from tessera.core.server import ServicerContext
from tessera.governance._compatibility import (
    CompatibilityMode,
    Incompatibility,
    check_compatibility,
)
from tessera.governance._contract_store import (
    ContractStore,
    NewContract,
    StoredContract,
    SubjectState,
)
from tessera.governance._errors import IncompatibleSchemaError, StandardViolationError
from tessera.governance._schema import JsonSchema, check_name, parse_schema
from tessera.governance._settings import GovernanceSettings
from tessera.governance._standard_rpcs import lint_messages
from tessera.governance._standard_store import StandardStore
from tessera.governance._standards import LintViolation
from tessera.proto.governance.v1 import contracts_pb2 as pb

_STATUSES = {
    pb.CONTRACT_STATUS_UNSPECIFIED: "ACTIVE",
    pb.DRAFT: "DRAFT",
    pb.ACTIVE: "ACTIVE",
    pb.DEPRECATED: "DEPRECATED",
}
_FIELD_LIMIT = 4096


class ContractRpcs:
    """The contract part of the Governance servicer: subjects and their versioned schemas.

    Args:
        store: Where contracts live.
        standards: Where the standards subjects may require live.
        settings: Limits (schema size).

    """

    def __init__(
        self, store: ContractStore, standards: StandardStore, settings: GovernanceSettings
    ) -> None:
        self._contracts = store
        self._standard_versions = standards
        self._settings = settings

    async def RegisterContract(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.RegisterContractRequest, context: ServicerContext
    ) -> pb.RegisterContractResponse:
        """Store a new version unless the subject's mode or standard refuses it (see the proto)."""
        subject = check_name("subject", request.subject)
        schema = parse_schema("schema_json", request.schema_json, self._settings.max_schema_bytes)
        for field in ("owner", "description"):
            if len(getattr(request, field)) > _FIELD_LIMIT:
                raise ValidationError.for_field(field, f"is over {_FIELD_LIMIT} characters")
        if request.status not in _STATUSES:
            raise ValidationError.for_field("status", f"unknown value {request.status}")
        new = NewContract(
            subject=subject,
            schema_json=request.schema_json,
            owner=request.owner,
            description=request.description,
            status=_STATUSES[request.status],
        )

        warnings: list[LintViolation] = []

        async def check(state: SubjectState) -> None:
            found = _incompatibilities(schema, state, self._contracts.default_mode)
            if found:
                raise IncompatibleSchemaError(subject, found)
            warnings[:] = await self._follows_standard(subject, schema, state)

        stored, created = await self._contracts.register(new, _same_schema, check)
        return pb.RegisterContractResponse(
            contract=_contract(stored), created=created, warnings=lint_messages(warnings)
        )

    async def _follows_standard(
        self, subject: str, schema: JsonSchema, state: SubjectState
    ) -> list[LintViolation]:
        """Lint against the subject's standard: raise under REJECT, return warnings under WARN."""
        if state.standard is None:
            return []
        standard = await self._standard_versions.get(state.standard, 0)
        violations = standard.lint(schema)
        if violations and state.standard_policy == "REJECT":
            raise StandardViolationError(subject, standard.name, violations)
        return violations

    async def CheckCompatibility(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.CheckCompatibilityRequest, context: ServicerContext
    ) -> pb.CheckCompatibilityResponse:
        """Check a schema against a subject without storing anything."""
        subject = check_name("subject", request.subject)
        schema = parse_schema("schema_json", request.schema_json, self._settings.max_schema_bytes)
        state = await self._contracts.subject(subject)
        mode = state.mode or self._contracts.default_mode
        found = _incompatibilities(schema, state, self._contracts.default_mode)
        return pb.CheckCompatibilityResponse(
            compatible=not found,
            mode=pb.CompatibilityMode.Value(mode.value),
            incompatibilities=[
                pb.Incompatibility(
                    path=item.path,
                    kind=item.kind,
                    reason=item.reason,
                    against_version=item.against_version,
                    direction=item.direction.value,
                )
                for item in found
            ],
        )

    async def GetContract(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.GetContractRequest, context: ServicerContext
    ) -> pb.GetContractResponse:
        """Return a contract by subject and version (0: latest) or by id."""
        selector = request.WhichOneof("selector")
        if selector == "id":
            stored = await self._contracts.get_by_id(request.id)
        elif selector == "subject_version":
            wanted = request.subject_version
            subject = check_name("subject_version.subject", wanted.subject)
            stored = await self._contracts.get(subject, wanted.version)
        else:
            raise ValidationError.for_field("selector", "give subject_version or id")
        return pb.GetContractResponse(contract=_contract(stored))

    async def ListSubjects(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.ListSubjectsRequest, context: ServicerContext
    ) -> pb.ListSubjectsResponse:
        """List every subject that has versions, by name."""
        return pb.ListSubjectsResponse(
            subjects=[
                pb.SubjectSummary(
                    subject=subject,
                    latest_version=version,
                    compatibility=pb.CompatibilityMode.Value(mode.value),
                )
                for subject, version, mode in await self._contracts.subjects()
            ]
        )

    async def SetCompatibility(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.SetCompatibilityRequest, context: ServicerContext
    ) -> pb.SetCompatibilityResponse:
        """Set a subject's compatibility mode."""
        subject = check_name("subject", request.subject)
        if request.compatibility not in pb.CompatibilityMode.values() or (
            request.compatibility == pb.COMPATIBILITY_MODE_UNSPECIFIED
        ):
            raise ValidationError.for_field(
                "compatibility", f"must be one of {', '.join(m.value for m in CompatibilityMode)}"
            )
        mode = CompatibilityMode(pb.CompatibilityMode.Name(request.compatibility))
        await self._contracts.set_mode(subject, mode)
        return pb.SetCompatibilityResponse(compatibility=request.compatibility)


def _incompatibilities(
    schema: JsonSchema, state: SubjectState, default_mode: CompatibilityMode
) -> list[Incompatibility]:
    previous = [(stored.version, stored.schema) for stored in state.versions]
    return check_compatibility(schema, previous, state.mode or default_mode)


def _same_schema(stored: str, new: str) -> bool:
    return bool(json.loads(stored) == json.loads(new))


def _contract(stored: StoredContract) -> pb.Contract:
    return pb.Contract(
        id=stored.id,
        subject=stored.subject,
        version=stored.version,
        schema_json=stored.schema_json,
        owner=stored.owner,
        description=stored.description,
        status=pb.ContractStatus.Value(stored.status),
    )
