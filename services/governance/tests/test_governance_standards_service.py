from __future__ import annotations

import json

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tessera.proto.governance.v1 import contracts_pb2, standards_pb2

STANDARD = standards_pb2.Standard(
    entity_pattern="[A-Z][A-Za-z0-9]*",
    field_pattern="[a-z][a-z0-9_]*",
    reserved_words=["select"],
    required_fields=[standards_pb2.RequiredField(name="created_at", type="string")],
)
GOOD = {
    "type": "object",
    "title": "Order",
    "properties": {"created_at": {"type": "string"}, "order_id": {"type": "integer"}},
    "required": ["created_at"],
}
BAD = {**GOOD, "properties": {**GOOD["properties"], "OrderTotal": {"type": "number"}}}


async def put_standard(governance, name):
    standard = standards_pb2.Standard()
    standard.CopyFrom(STANDARD)
    standard.name = name
    response = await governance.PutStandard(standards_pb2.PutStandardRequest(standard=standard))
    return response.standard


def register(subject, schema):
    return contracts_pb2.RegisterContractRequest(subject=subject, schema_json=json.dumps(schema))


async def test_put_get_and_lint(governance, name):
    stored = await put_standard(governance, name)
    assert stored.version == 1
    got = await governance.GetStandard(standards_pb2.GetStandardRequest(name=name))
    assert got.standard == stored
    clean = await governance.LintSchema(
        standards_pb2.LintSchemaRequest(standard=name, schema_json=json.dumps(GOOD))
    )
    assert list(clean.violations) == []
    assert clean.version == 1
    dirty = await governance.LintSchema(
        standards_pb2.LintSchemaRequest(standard=name, schema_json=json.dumps(BAD))
    )
    assert [(v.path, v.rule) for v in dirty.violations] == [
        ("/properties/OrderTotal", "FIELD_NAME")
    ]


async def test_subject_with_reject_policy_refuses_and_stores_nothing(
    governance, governance_etcd, name
):
    await put_standard(governance, name)
    await governance.SetSubjectStandard(
        standards_pb2.SetSubjectStandardRequest(subject=name, standard=name)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await governance.RegisterContract(register(name, BAD))
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "OrderTotal" in caught.value.details()
    failures = []
    for detail in rpc_status.from_call(caught.value).details:
        failure = error_details_pb2.PreconditionFailure()
        if detail.Unpack(failure):
            failures.extend((v.type, v.subject) for v in failure.violations)
    assert failures == [("FIELD_NAME", "/properties/OrderTotal")]
    versions = await governance_etcd.get_prefix(f"/tessera/governance/subjects/{name}/versions/")
    assert versions.items == ()
    response = await governance.RegisterContract(register(name, GOOD))
    assert response.contract.version == 1
    assert list(response.warnings) == []


async def test_subject_with_warn_policy_stores_and_warns(governance, name):
    await put_standard(governance, name)
    await governance.SetCompatibility(
        contracts_pb2.SetCompatibilityRequest(subject=name, compatibility=contracts_pb2.NONE)
    )
    await governance.SetSubjectStandard(
        standards_pb2.SetSubjectStandardRequest(
            subject=name, standard=name, policy=standards_pb2.WARN
        )
    )
    response = await governance.RegisterContract(register(name, BAD))
    assert response.created
    assert [(w.path, w.rule) for w in response.warnings] == [
        ("/properties/OrderTotal", "FIELD_NAME")
    ]
    # The standard and the compatibility mode were set separately; both are kept.
    listed = await governance.ListSubjects(contracts_pb2.ListSubjectsRequest())
    (mine,) = [s for s in listed.subjects if s.subject == name]
    assert mine.compatibility == contracts_pb2.NONE


async def test_removing_the_standard_lets_anything_through(governance, name):
    await put_standard(governance, name)
    await governance.SetSubjectStandard(
        standards_pb2.SetSubjectStandardRequest(subject=name, standard=name)
    )
    await governance.SetSubjectStandard(standards_pb2.SetSubjectStandardRequest(subject=name))
    response = await governance.RegisterContract(register(name, BAD))
    assert response.contract.version == 1


def violations(error):
    found = {}
    for detail in rpc_status.from_call(error).details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            found.update((v.field, v.description) for v in bad_request.field_violations)
    return found


@pytest.mark.parametrize(
    ("standard", "field"),
    [
        (standards_pb2.Standard(name="ok", field_pattern="[a-"), "standard.field_pattern"),
        (standards_pb2.Standard(name="ok", allowed_types=["text"]), "standard.allowed_types"),
        (standards_pb2.Standard(name="not ok"), "standard.name"),
    ],
    ids=["pattern", "type", "name"],
)
async def test_bad_standard_is_invalid_argument_and_not_stored(
    governance, governance_etcd, standard, field
):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await governance.PutStandard(standards_pb2.PutStandardRequest(standard=standard))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(caught.value)
    stored = await governance_etcd.get_prefix("/tessera/governance/standards/ok/")
    assert stored.items == ()


async def test_unknown_standard_is_not_found(governance, name):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await governance.SetSubjectStandard(
            standards_pb2.SetSubjectStandardRequest(subject=name, standard=name)
        )
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await governance.LintSchema(
            standards_pb2.LintSchemaRequest(standard=name, schema_json="{}")
        )
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
