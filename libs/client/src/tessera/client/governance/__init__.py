"""Python SDK of the governance service: contracts, standards, entity model, validation, scans.

`GovernanceClient` is the asyncio client; `SyncGovernanceClient` is its blocking facade.
Errors come from the core tree (`tessera.core`), plus `ContractRefusedError` for a contract
version the subject's compatibility mode refuses.
"""

from tessera.client.governance._client import GovernanceClient, SchemaInput
from tessera.client.governance._entity_model import (
    Cardinality,
    Entity,
    Model,
    ReferentialCheck,
    Relationship,
)
from tessera.client.governance._errors import ContractRefusedError
from tessera.client.governance._model import (
    CompatibilityMode,
    CompatibilityReport,
    Contract,
    ContractStatus,
    Incompatibility,
    LintViolation,
    Registration,
    RequiredField,
    Rule,
    RuleMode,
    RuleResult,
    Severity,
    Standard,
    StandardPolicy,
    Subject,
    Validation,
)
from tessera.client.governance._scans import (
    FieldReport,
    Freshness,
    ReferenceReport,
    RuleReport,
    SampleRow,
    Scan,
    ScanFailedError,
    ScanReport,
    ScanSchedule,
    ScanState,
    Table,
)
from tessera.client.governance._sync import SyncGovernanceClient

__all__ = [
    "Cardinality",
    "CompatibilityMode",
    "CompatibilityReport",
    "Contract",
    "ContractRefusedError",
    "ContractStatus",
    "Entity",
    "FieldReport",
    "Freshness",
    "GovernanceClient",
    "Incompatibility",
    "LintViolation",
    "Model",
    "ReferenceReport",
    "ReferentialCheck",
    "Registration",
    "Relationship",
    "RequiredField",
    "Rule",
    "RuleMode",
    "RuleReport",
    "RuleResult",
    "SampleRow",
    "Scan",
    "ScanFailedError",
    "ScanReport",
    "ScanSchedule",
    "ScanState",
    "SchemaInput",
    "Severity",
    "Standard",
    "StandardPolicy",
    "Subject",
    "SyncGovernanceClient",
    "Table",
    "Validation",
]
