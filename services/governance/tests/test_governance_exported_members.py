import tessera.client.governance as client
import tessera.governance as service
import tessera.rule_engines as engines


def test_governance_public_api_is_pinned() -> None:
    assert service.__all__ == [
        "GOVERNANCE_SERVICE",
        "CompatibilityMode",
        "Direction",
        "GovernanceServicer",
        "GovernanceSettings",
        "Incompatibility",
        "IncompatibleSchemaError",
        "check_compatibility",
        "governance_binding",
        "reader_incompatibilities",
    ]
    assert engines.__all__ == ["CelEngine", "CostLimit", "JsonSchemaEngine", "estimate_cost"]
    assert client.__all__ == [
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
    for module in (service, engines, client):
        assert all(hasattr(module, name) for name in module.__all__)
