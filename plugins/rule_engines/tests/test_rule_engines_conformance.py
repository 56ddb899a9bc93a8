from __future__ import annotations

import json

import pytest

from tessera.core.plugins import RULE_ENGINES, load_plugins
from tessera.rule_engines import CelEngine, JsonSchemaEngine
from tessera.testing.conformance.rule_engines import RULE_ENGINE_CHECKS, RuleEngineSubject

CEL = RuleEngineSubject(
    CelEngine(),
    rules={
        "adult": "record.age >= 18",
        "contact": "record.email.contains('@')",
        "known_status": "record.status in ['active', 'pending']",
    },
    invalid=["record.age >=", "record.age + 1", "unknown_variable > 1", ""],
)

JSON_SCHEMA = RuleEngineSubject(
    JsonSchemaEngine(),
    rules={
        "adult": json.dumps(
            {"required": ["age"], "properties": {"age": {"type": "number", "minimum": 18}}}
        ),
        "contact": json.dumps(
            {"required": ["email"], "properties": {"email": {"type": "string", "pattern": "@"}}}
        ),
        "known_status": json.dumps(
            {"required": ["status"], "properties": {"status": {"enum": ["active", "pending"]}}}
        ),
    },
    invalid=["{not json", '{"type": 12}', "[1]", '{"minimum": "x"}'],
)


@pytest.mark.parametrize("check", RULE_ENGINE_CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("subject", [CEL, JSON_SCHEMA], ids=["cel", "jsonschema"])
def test_conformance(check, subject):
    check(subject)


def test_both_engines_are_registered_as_plugins():
    plugins = load_plugins(RULE_ENGINES)
    assert {"cel", "jsonschema"} <= set(plugins.loaded)
    assert isinstance(plugins.get("cel").create(), CelEngine)
    assert isinstance(plugins.get("jsonschema").create(), JsonSchemaEngine)
