from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from google.rpc import error_details_pb2

from tessera.proto.governance.v1 import contracts_pb2, rules_pb2, standards_pb2

#: Compatibility modes, as the service names them.
CompatibilityMode = Literal[
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
]
ContractStatus = Literal["DRAFT", "ACTIVE", "DEPRECATED"]
Severity = Literal["INFO", "WARNING", "ERROR"]
RuleMode = Literal["ENFORCE", "SHADOW"]
StandardPolicy = Literal["REJECT", "WARN"]


@dataclass(frozen=True, slots=True)
class Contract:
    """One stored version of a subject's contract.

    Attributes:
        id: Globally unique id.
        subject: Its subject.
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

    @classmethod
    def from_proto(cls, message: contracts_pb2.Contract) -> Contract:
        """Copy a `tessera.governance.v1.Contract`."""
        return cls(
            id=message.id,
            subject=message.subject,
            version=message.version,
            schema_json=message.schema_json,
            owner=message.owner,
            description=message.description,
            status=contracts_pb2.ContractStatus.Name(message.status),
        )


@dataclass(frozen=True, slots=True)
class Incompatibility:
    """One reason a schema cannot be a new version of a subject.

    Attributes:
        path: JSON Pointer to the keyword that differs.
        kind: Machine-readable kind (`TYPE_NARROWED`, ...).
        reason: For people.
        against_version: The version compared with.
        direction: `BACKWARD` (the new schema reads old data) or `FORWARD`.

    """

    path: str
    kind: str
    reason: str
    against_version: int
    direction: str

    @classmethod
    def from_proto(cls, message: contracts_pb2.Incompatibility) -> Incompatibility:
        """Copy a `tessera.governance.v1.Incompatibility`."""
        return cls(
            path=message.path,
            kind=message.kind,
            reason=message.reason,
            against_version=message.against_version,
            direction=message.direction,
        )

    @classmethod
    def from_violation(
        cls, violation: error_details_pb2.PreconditionFailure.Violation
    ) -> Incompatibility:
        """Read one violation of the `PreconditionFailure` a refused registration carries."""
        version, _, path = violation.subject.partition(":")
        return cls(
            path=path,
            kind=violation.type,
            reason=violation.description,
            against_version=int(version.lstrip("v") or 0),
            direction="",
        )


@dataclass(frozen=True, slots=True)
class CompatibilityReport:
    """What `check_contract` found.

    Attributes:
        compatible: Whether the schema may be registered.
        mode: The subject's mode the check used.
        incompatibilities: Why not, when not.

    """

    compatible: bool
    mode: str
    incompatibilities: list[Incompatibility]


@dataclass(frozen=True, slots=True)
class Subject:
    """One subject in `list_subjects`.

    Attributes:
        name: The subject.
        latest_version: Its newest version.
        compatibility: Its mode.

    """

    name: str
    latest_version: int
    compatibility: str


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of a rule set.

    Attributes:
        name: Unique in the rule set.
        expression: In the rule set's engine language (CEL over `record` by default).
        message: Reported when the rule fails.
        severity: `ERROR` (default), `WARNING` or `INFO`.
        mode: `ENFORCE` (default) or `SHADOW`.

    """

    name: str
    expression: str
    message: str = ""
    severity: Severity = "ERROR"
    mode: RuleMode = "ENFORCE"

    def to_proto(self) -> rules_pb2.Rule:
        """Build a `tessera.governance.v1.Rule`."""
        return rules_pb2.Rule(
            name=self.name,
            expression=self.expression,
            message=self.message,
            severity=rules_pb2.Severity.Value(self.severity),
            mode=rules_pb2.RuleMode.Value(self.mode),
        )


@dataclass(frozen=True, slots=True)
class RuleResult:
    """The outcome of one rule on one record.

    Attributes:
        rule: The rule's name.
        outcome: `PASSED`, `FAILED` or `ERRORED`.
        severity: The rule's severity.
        mode: The rule's mode.
        message: The rule's message when it failed; the engine's reason when it errored.

    """

    rule: str
    outcome: str
    severity: str
    mode: str
    message: str


@dataclass(frozen=True, slots=True)
class Validation:
    """The verdict on one record.

    Attributes:
        valid: False when an enforced rule of severity ERROR failed or errored.
        results: One per rule, in rule order.

    """

    valid: bool
    results: list[RuleResult]

    @property
    def problems(self) -> list[RuleResult]:
        """The rules that did not pass."""
        return [result for result in self.results if result.outcome != "PASSED"]

    @classmethod
    def from_proto(cls, message: rules_pb2.RecordResult) -> Validation:
        """Copy a `tessera.governance.v1.RecordResult`."""
        return cls(
            valid=message.valid,
            results=[
                RuleResult(
                    rule=result.rule,
                    outcome=rules_pb2.RuleOutcome.Name(result.outcome),
                    severity=rules_pb2.Severity.Name(result.severity),
                    mode=rules_pb2.RuleMode.Name(result.mode),
                    message=result.message,
                )
                for result in message.results
            ],
        )


@dataclass(frozen=True, slots=True)
class LintViolation:
    """One way a schema breaks a standard.

    Attributes:
        path: JSON Pointer into the schema.
        rule: `ENTITY_NAME`, `FIELD_NAME`, `RESERVED_WORD`, `TYPE_NOT_ALLOWED` or
            `REQUIRED_FIELD_*`.
        message: For people.

    """

    path: str
    rule: str
    message: str

    @classmethod
    def from_proto(cls, message: standards_pb2.LintViolation) -> LintViolation:
        """Copy a `tessera.governance.v1.LintViolation`."""
        return cls(path=message.path, rule=message.rule, message=message.message)


@dataclass(frozen=True, slots=True)
class Registration:
    """What `push_contract` did.

    Attributes:
        contract: The stored contract (the latest one when nothing changed).
        created: False when the latest version already had this schema.
        warnings: Violations of the subject's standard when its policy is WARN.

    """

    contract: Contract
    created: bool
    warnings: list[LintViolation]


@dataclass(frozen=True, slots=True)
class RequiredField:
    """A field every schema under a standard must declare and require.

    Attributes:
        name: The property name.
        type: Its JSON type; empty for any.
        format: Its `format`; empty for any.

    """

    name: str
    type: str = ""
    format: str = ""


@dataclass(frozen=True, slots=True)
class Standard:
    """A naming-and-structure standard (see docs/governance.md).

    Attributes:
        name: Its name.
        entity_pattern: Regular expression for `title` and `$defs` names (whole match).
        field_pattern: Regular expression for property names (whole match).
        reserved_words: Property names that may not be used (case-insensitive).
        required_fields: Fields the top-level object must declare and require.
        allowed_types: JSON types properties may have; empty for all.
        description: Free text.
        version: Set by the service.

    """

    name: str
    entity_pattern: str = ""
    field_pattern: str = ""
    reserved_words: tuple[str, ...] = ()
    required_fields: tuple[RequiredField, ...] = ()
    allowed_types: tuple[str, ...] = ()
    description: str = ""
    version: int = 0

    def to_proto(self) -> standards_pb2.Standard:
        """Build a `tessera.governance.v1.Standard`."""
        return standards_pb2.Standard(
            name=self.name,
            version=self.version,
            description=self.description,
            entity_pattern=self.entity_pattern,
            field_pattern=self.field_pattern,
            reserved_words=self.reserved_words,
            required_fields=[
                standards_pb2.RequiredField(name=f.name, type=f.type, format=f.format)
                for f in self.required_fields
            ],
            allowed_types=self.allowed_types,
        )

    @classmethod
    def from_proto(cls, message: standards_pb2.Standard) -> Standard:
        """Copy a `tessera.governance.v1.Standard`."""
        return cls(
            name=message.name,
            version=message.version,
            description=message.description,
            entity_pattern=message.entity_pattern,
            field_pattern=message.field_pattern,
            reserved_words=tuple(message.reserved_words),
            required_fields=tuple(
                RequiredField(name=f.name, type=f.type, format=f.format)
                for f in message.required_fields
            ),
            allowed_types=tuple(message.allowed_types),
        )
