from __future__ import annotations

import json

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tessera.proto.governance.v1 import contracts_pb2, model_pb2

SCHEMAS = {
    "customer": {"type": "object", "properties": {"customer_id": {}, "name": {}}},
    "order": {"type": "object", "properties": {"order_id": {}, "customer_id": {}}},
    "profile": {"type": "object", "properties": {"customer_id": {}, "bio": {}}},
    "tag": {"type": "object", "properties": {"tag_id": {}}},
    "order_tag": {"type": "object", "properties": {"order_id": {}, "tag_id": {}}},
}
KEYS = {
    "customer": ["customer_id"],
    "order": ["order_id"],
    "profile": ["customer_id"],
    "tag": ["tag_id"],
    "order_tag": ["order_id", "tag_id"],
}


def violations(error):
    found = {}
    for detail in rpc_status.from_call(error).details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            found.update((v.field, v.description) for v in bad_request.field_violations)
    return found


@pytest.fixture
async def entities(governance, name):
    """Register one subject and entity per schema, all prefixed with this test's name."""
    names = {}
    for short, schema in SCHEMAS.items():
        full = f"{name}-{short}"
        await governance.SetCompatibility(
            contracts_pb2.SetCompatibilityRequest(subject=full, compatibility=contracts_pb2.NONE)
        )
        await governance.RegisterContract(
            contracts_pb2.RegisterContractRequest(subject=full, schema_json=json.dumps(schema))
        )
        await governance.UpsertEntity(
            model_pb2.UpsertEntityRequest(
                entity=model_pb2.Entity(name=full, subject=full, key=KEYS[short])
            )
        )
        names[short] = full
    return names


async def test_relationships_become_referential_checks(governance, entities, name):
    e = entities
    relationships = [
        model_pb2.Relationship(
            name=f"{name}-placed-by",
            cardinality=model_pb2.ONE_TO_MANY,
            from_entity=e["order"],
            to_entity=e["customer"],
            from_fields=["customer_id"],
        ),
        model_pb2.Relationship(
            name=f"{name}-profile-of",
            cardinality=model_pb2.ONE_TO_ONE,
            from_entity=e["profile"],
            to_entity=e["customer"],
            from_fields=["customer_id"],
        ),
        model_pb2.Relationship(
            name=f"{name}-tagged",
            cardinality=model_pb2.MANY_TO_MANY,
            from_entity=e["order"],
            to_entity=e["tag"],
            through=e["order_tag"],
            from_fields=["order_id"],
            to_fields=["tag_id"],
        ),
    ]
    for relationship in relationships:
        await governance.UpsertRelationship(
            model_pb2.UpsertRelationshipRequest(relationship=relationship)
        )
    model = await governance.GetModel(model_pb2.GetModelRequest())
    assert {entity.name for entity in model.entities} >= set(e.values())
    mine = [c for c in model.checks if c.relationship.startswith(name)]
    assert [
        (
            c.relationship,
            c.child_entity,
            list(c.child_fields),
            c.parent_entity,
            list(c.parent_fields),
            c.unique,
        )
        for c in mine
    ] == [
        (f"{name}-placed-by", e["order"], ["customer_id"], e["customer"], ["customer_id"], False),
        (f"{name}-profile-of", e["profile"], ["customer_id"], e["customer"], ["customer_id"], True),
        (f"{name}-tagged", e["order_tag"], ["order_id"], e["order"], ["order_id"], False),
        (f"{name}-tagged", e["order_tag"], ["tag_id"], e["tag"], ["tag_id"], False),
    ]


async def test_upserting_an_entity_replaces_it(governance, entities):
    customer = entities["customer"]
    await governance.UpsertEntity(
        model_pb2.UpsertEntityRequest(
            entity=model_pb2.Entity(name=customer, subject=customer, key=["name"], description="d")
        )
    )
    model = await governance.GetModel(model_pb2.GetModelRequest())
    (entity,) = [x for x in model.entities if x.name == customer]
    assert (list(entity.key), entity.description) == (["name"], "d")


@pytest.mark.parametrize(
    ("relationship", "field"),
    [
        (
            {
                "cardinality": model_pb2.ONE_TO_MANY,
                "from_entity": "order",
                "to_entity": "nope",
                "from_fields": ["customer_id"],
            },
            "relationship.to_entity",
        ),
        (
            {
                "cardinality": model_pb2.ONE_TO_MANY,
                "from_entity": "order",
                "to_entity": "customer",
                "from_fields": ["missing"],
            },
            "relationship.from_fields[0]",
        ),
        (
            {
                "cardinality": model_pb2.ONE_TO_MANY,
                "from_entity": "order",
                "to_entity": "customer",
                "from_fields": ["customer_id", "order_id"],
            },
            "relationship.from_fields",
        ),
        (
            {
                "cardinality": model_pb2.MANY_TO_MANY,
                "from_entity": "order",
                "to_entity": "tag",
                "from_fields": ["order_id"],
            },
            "relationship.through",
        ),
        (
            {
                "cardinality": model_pb2.ONE_TO_MANY,
                "from_entity": "order",
                "to_entity": "customer",
                "from_fields": ["customer_id"],
                "to_fields": ["x"],
            },
            "relationship.to_fields",
        ),
        (
            {"cardinality": 0, "from_entity": "order", "to_entity": "customer"},
            "relationship.cardinality",
        ),
    ],
    ids=["unknown-entity", "unknown-field", "key-arity", "no-through", "to-fields", "cardinality"],
)
async def test_bad_relationship_is_invalid_argument_and_not_stored(
    governance, governance_etcd, entities, name, relationship, field
):
    for role in ("from_entity", "to_entity"):
        relationship[role] = entities.get(relationship[role], relationship[role])
    message = model_pb2.Relationship(name=f"{name}-bad", **relationship)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await governance.UpsertRelationship(
            model_pb2.UpsertRelationshipRequest(relationship=message)
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(caught.value)
    assert await governance_etcd.get(f"/tessera/governance/model/relationships/{name}-bad") is None


async def test_bad_entity_is_refused(governance, governance_etcd, entities, name):
    customer = entities["customer"]
    bad_key = model_pb2.Entity(name=f"{name}-x", subject=customer, key=["nope"])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await governance.UpsertEntity(model_pb2.UpsertEntityRequest(entity=bad_key))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "entity.key[0]" in violations(caught.value)
    no_key = model_pb2.Entity(name=f"{name}-x", subject=customer)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await governance.UpsertEntity(model_pb2.UpsertEntityRequest(entity=no_key))
    assert "entity.key" in violations(caught.value)
    unknown_subject = model_pb2.Entity(name=f"{name}-x", subject=f"{name}-none", key=["a"])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await governance.UpsertEntity(model_pb2.UpsertEntityRequest(entity=unknown_subject))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert await governance_etcd.get(f"/tessera/governance/model/entities/{name}-x") is None
