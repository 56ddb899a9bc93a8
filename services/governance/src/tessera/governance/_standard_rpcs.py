from __future__ import annotations

from tessera.core import ValidationError
from tessera.core.server import ServicerContext
from tessera.governance._contract_store import ContractStore
from tessera.governance._schema import check_name, parse_schema
from tessera.governance._settings import GovernanceSettings
from tessera.governance._standard_store import StandardStore
from tessera.governance._standards import LintViolation, RequiredField, Standard
from tessera.proto.governance.v1 import standards_pb2 as pb

_POLICIES = {pb.STANDARD_POLICY_UNSPECIFIED: "REJECT", pb.REJECT: "REJECT", pb.WARN: "WARN"}


class StandardRpcs:
    """The standards part of the Governance servicer: naming-and-structure standards and lint.

    Args:
        standards: Where standards live.
        contracts: Where subjects keep the standard they require.
        settings: Limits (schema size).

    """

    def __init__(
        self, standards: StandardStore, contracts: ContractStore, settings: GovernanceSettings
    ) -> None:
        self._standards = standards
        self._subjects = contracts
        self._limits = settings

    async def PutStandard(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.PutStandardRequest, context: ServicerContext
    ) -> pb.PutStandardResponse:
        """Check the standard (its patterns compile, its types exist), then store a version."""
        stored = await self._standards.put(_standard(request.standard))
        return pb.PutStandardResponse(standard=standard_message(stored))

    async def GetStandard(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.GetStandardRequest, context: ServicerContext
    ) -> pb.GetStandardResponse:
        """Return one version of a standard (0: the latest)."""
        name = check_name("name", request.name)
        standard = await self._standards.get(name, request.version)
        return pb.GetStandardResponse(standard=standard_message(standard))

    async def LintSchema(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.LintSchemaRequest, context: ServicerContext
    ) -> pb.LintSchemaResponse:
        """Report every way a schema breaks a standard."""
        name = check_name("standard", request.standard)
        schema = parse_schema("schema_json", request.schema_json, self._limits.max_schema_bytes)
        standard = await self._standards.get(name, request.version)
        return pb.LintSchemaResponse(
            violations=lint_messages(standard.lint(schema)), version=standard.version
        )

    async def SetSubjectStandard(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.SetSubjectStandardRequest, context: ServicerContext
    ) -> pb.SetSubjectStandardResponse:
        """Make a subject's new versions follow a standard (empty: none)."""
        subject = check_name("subject", request.subject)
        if request.policy not in _POLICIES:
            raise ValidationError.for_field("policy", f"unknown value {request.policy}")
        standard = None
        if request.standard:
            standard = check_name("standard", request.standard)
            await self._standards.get(standard, 0)  # NotFoundError for an unknown standard
        await self._subjects.set_standard(subject, standard, _POLICIES[request.policy])
        return pb.SetSubjectStandardResponse()


def _standard(message: pb.Standard) -> Standard:
    return Standard(
        name=check_name("standard.name", message.name),
        version=0,
        description=message.description,
        entity_pattern=message.entity_pattern,
        field_pattern=message.field_pattern,
        reserved_words=tuple(message.reserved_words),
        required_fields=tuple(
            RequiredField(name=item.name, type=item.type, format=item.format)
            for item in message.required_fields
        ),
        allowed_types=tuple(message.allowed_types),
    )


def standard_message(standard: Standard) -> pb.Standard:
    """Build the proto message of a stored standard."""
    return pb.Standard(
        name=standard.name,
        version=standard.version,
        description=standard.description,
        entity_pattern=standard.entity_pattern,
        field_pattern=standard.field_pattern,
        reserved_words=standard.reserved_words,
        required_fields=[
            pb.RequiredField(name=item.name, type=item.type, format=item.format)
            for item in standard.required_fields
        ],
        allowed_types=standard.allowed_types,
    )


def lint_messages(violations: list[LintViolation]) -> list[pb.LintViolation]:
    """Build the proto messages of lint violations."""
    return [
        pb.LintViolation(path=item.path, rule=item.rule, message=item.message)
        for item in violations
    ]
