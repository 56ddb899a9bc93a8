from __future__ import annotations

import asyncio

import pytest

from tessera.client.governance import (
    ContractRefusedError,
    Entity,
    GovernanceClient,
    ReferentialCheck,
    Relationship,
    RequiredField,
    Rule,
    Standard,
    SyncGovernanceClient,
)
from tessera.core import NotFoundError, ValidationError

V1 = {"type": "object", "properties": {"id": {"type": "integer"}}, "additionalProperties": False}
V2_REQUIRED = {**V1, "properties": {"id": {"type": "integer"}, "x": {}}, "required": ["x"]}


@pytest.fixture
async def gov(governance_target):
    async with GovernanceClient.connect(governance_target, timeout_s=5) as client:
        yield client


async def test_push_check_get_and_list(gov, name):
    registration = await gov.push_contract(name, V1, owner="data-team")
    contract = registration.contract
    assert registration.created
    assert registration.warnings == []
    assert (contract.version, contract.owner, contract.status) == (1, "data-team", "ACTIVE")
    assert await gov.get_contract(name) == contract
    assert await gov.get_contract_by_id(contract.id) == contract
    report = await gov.check_contract(name, V2_REQUIRED)
    assert not report.compatible
    assert report.mode == "BACKWARD"
    assert [(i.path, i.kind) for i in report.incompatibilities] == [
        ("/required", "REQUIRED_PROPERTY_ADDED")
    ]
    assert [s.name for s in await gov.list_subjects() if s.name == name] == [name]


async def test_refused_push_raises_with_the_reasons(gov, name):
    await gov.push_contract(name, V1)
    with pytest.raises(ContractRefusedError) as caught:
        await gov.push_contract(name, V2_REQUIRED)
    (item,) = caught.value.incompatibilities
    assert (item.against_version, item.path, item.kind) == (
        1,
        "/required",
        "REQUIRED_PROPERTY_ADDED",
    )
    await gov.set_compatibility(name, "NONE")
    registration = await gov.push_contract(name, V2_REQUIRED)
    assert registration.contract.version == 2


async def test_bad_input_and_missing_things_map_to_the_error_tree(gov, name):
    with pytest.raises(ValidationError) as caught:
        await gov.push_contract(name, "{oops")
    assert [v.field for v in caught.value.violations] == ["schema_json"]
    with pytest.raises(NotFoundError):
        await gov.get_contract(name, 7)
    with pytest.raises(ValidationError) as caught:
        await gov.put_rule_set(name, [Rule("r", "record.a >")])
    assert [v.field for v in caught.value.violations] == ["rule_set.rules[0].expression"]


async def test_validate_and_validate_many(gov, name):
    version = await gov.put_rule_set(
        name,
        [
            Rule("adult", "record.age >= 18", "too young"),
            Rule("named", "has(record.name)", severity="WARNING"),
        ],
    )
    assert version == 1
    verdict = await gov.validate(name, {"age": 10})
    assert not verdict.valid
    assert [(p.rule, p.outcome, p.message) for p in verdict.problems] == [
        ("adult", "FAILED", "too young"),
        ("named", "FAILED", "rule 'named' failed"),
    ]
    records = [{"age": age, "name": "n"} for age in range(30)]
    verdicts = [v async for v in gov.validate_many(name, records, batch_size=7)]
    assert [v.valid for v in verdicts] == [age >= 18 for age in range(30)]


async def test_sync_facade(governance_target, name):
    def use_sync() -> tuple[int, bool, list[bool]]:
        with SyncGovernanceClient(governance_target, timeout_s=5) as gov:
            registration = gov.push_contract(name, V1)
            gov.put_rule_set(name, [Rule("pos", "record.n > 0")])
            verdicts = gov.validate_many(name, [{"n": 1}, {"n": -1}])
            return (
                registration.contract.version,
                registration.created,
                [v.valid for v in verdicts],
            )

    # The server runs on this test's event loop, so the blocking client runs in a thread.
    assert await asyncio.to_thread(use_sync) == (1, True, [True, False])


async def test_standards_lint_and_subject_policies(gov, name):
    standard = await gov.put_standard(
        Standard(name=name, field_pattern="[a-z_]+", required_fields=(RequiredField("id"),))
    )
    assert standard.version == 1
    camel = {"type": "object", "properties": {"id": {}, "userName": {}}, "required": ["id"]}
    assert [(v.path, v.rule) for v in await gov.lint_schema(name, camel)] == [
        ("/properties/userName", "FIELD_NAME")
    ]
    await gov.set_subject_standard(name, name, policy="WARN")
    registration = await gov.push_contract(name, camel)
    assert [w.rule for w in registration.warnings] == ["FIELD_NAME"]
    await gov.set_subject_standard(f"{name}-strict", name)
    with pytest.raises(ContractRefusedError) as caught:
        await gov.push_contract(f"{name}-strict", camel)
    assert caught.value.incompatibilities == []
    assert [(v.path, v.rule) for v in caught.value.violations] == [
        ("/properties/userName", "FIELD_NAME")
    ]


async def test_entity_model(gov, name):
    customer, order = f"{name}-customer", f"{name}-order"
    await gov.push_contract(customer, {"type": "object", "properties": {"id": {}}})
    await gov.push_contract(order, {"type": "object", "properties": {"id": {}, "customer": {}}})
    await gov.upsert_entity(Entity(customer, customer, ("id",)))
    await gov.upsert_entity(Entity(order, order, ("id",)))
    placed = Relationship(f"{name}-placed", "ONE_TO_MANY", order, customer, ("customer",))
    await gov.upsert_relationship(placed)
    model = await gov.get_model()
    assert placed in model.relationships
    assert Entity(order, order, ("id",)) in model.entities
    assert [c for c in model.checks if c.relationship == placed.name] == [
        ReferentialCheck(placed.name, order, ("customer",), customer, ("id",), False)
    ]
    with pytest.raises(ValidationError) as caught:
        await gov.upsert_relationship(
            Relationship(f"{name}-bad", "ONE_TO_MANY", order, customer, ("nope",))
        )
    assert [v.field for v in caught.value.violations] == ["relationship.from_fields[0]"]
