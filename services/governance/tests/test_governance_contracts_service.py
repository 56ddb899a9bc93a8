from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tessera.core.etcd import EtcdClient
from tessera.proto.governance.v1 import contracts_pb2 as pb

V1 = {"type": "object", "properties": {"id": {"type": "integer"}}, "additionalProperties": False}
V2 = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "email": {"type": "string"}},
    "additionalProperties": False,
}
V3_REQUIRES_EMAIL = {**V2, "required": ["email"]}


def register(subject: str, schema: Any, **more: Any) -> pb.RegisterContractRequest:
    return pb.RegisterContractRequest(subject=subject, schema_json=json.dumps(schema), **more)


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    found: dict[str, str] = {}
    for detail in rpc_status.from_call(error).details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            found.update((v.field, v.description) for v in bad_request.field_violations)
    return found


async def subject_keys(etcd: EtcdClient, subject: str) -> dict[bytes, bytes]:
    snapshot = await etcd.get_prefix(f"/tessera/governance/subjects/{subject}/")
    return snapshot.as_dict()


async def test_versions_and_ids_are_allocated_in_order(governance, name):
    first = await governance.RegisterContract(register(name, V1, owner="team-a"), timeout=5)
    second = await governance.RegisterContract(register(name, V2, description="adds email"))
    assert (first.created, first.contract.version) == (True, 1)
    assert (second.created, second.contract.version) == (True, 2)
    assert second.contract.id > first.contract.id
    assert first.contract.owner == "team-a"
    assert first.contract.status == pb.ACTIVE


async def test_registering_the_latest_schema_again_returns_it_unchanged(governance, name):
    first = await governance.RegisterContract(register(name, V1))
    again = await governance.RegisterContract(
        pb.RegisterContractRequest(subject=name, schema_json=json.dumps(V1, indent=2))
    )
    assert not again.created
    assert again.contract == first.contract


async def test_incompatible_version_is_refused_with_reasons_and_nothing_changes(
    governance, governance_etcd, name
):
    await governance.RegisterContract(register(name, V1))
    before = await subject_keys(governance_etcd, name)
    counter_before = await governance_etcd.get("/tessera/governance/counters/contract_id")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await governance.RegisterContract(register(name, V3_REQUIRES_EMAIL))
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "/required" in caught.value.details()
    failures = []
    for detail in rpc_status.from_call(caught.value).details:
        failure = error_details_pb2.PreconditionFailure()
        if detail.Unpack(failure):
            failures.extend(failure.violations)
    assert [(v.type, v.subject) for v in failures] == [("REQUIRED_PROPERTY_ADDED", "v1:/required")]
    assert await subject_keys(governance_etcd, name) == before
    counter_after = await governance_etcd.get("/tessera/governance/counters/contract_id")
    assert counter_after is not None
    assert counter_before is not None
    assert counter_after.value == counter_before.value


async def test_check_compatibility_explains_without_storing(governance, governance_etcd, name):
    await governance.RegisterContract(register(name, V1))
    before = await subject_keys(governance_etcd, name)
    narrowed = {**V1, "properties": {"id": {"type": "string"}}}
    response = await governance.CheckCompatibility(
        pb.CheckCompatibilityRequest(subject=name, schema_json=json.dumps(narrowed))
    )
    assert not response.compatible
    assert response.mode == pb.BACKWARD
    (item,) = response.incompatibilities
    assert (item.path, item.kind, item.against_version, item.direction) == (
        "/properties/id/type",
        "TYPE_NARROWED",
        1,
        "BACKWARD",
    )
    assert "integer" in item.reason
    ok = await governance.CheckCompatibility(
        pb.CheckCompatibilityRequest(subject=name, schema_json=json.dumps(V2))
    )
    assert ok.compatible
    assert not ok.incompatibilities
    assert await subject_keys(governance_etcd, name) == before


async def test_compatibility_mode_none_accepts_anything(governance, name):
    await governance.SetCompatibility(
        pb.SetCompatibilityRequest(subject=name, compatibility=pb.NONE)
    )
    await governance.RegisterContract(register(name, V1))
    response = await governance.RegisterContract(register(name, V3_REQUIRES_EMAIL))
    assert response.contract.version == 2


async def test_forward_mode_refuses_what_backward_accepts(governance, name):
    await governance.SetCompatibility(
        pb.SetCompatibilityRequest(subject=name, compatibility=pb.FORWARD)
    )
    await governance.RegisterContract(register(name, V1))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await governance.RegisterContract(register(name, V2))
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL" not in caught.value.details()
    assert "/properties/email" in caught.value.details()


async def test_get_contract_by_version_latest_and_id(governance, name):
    first = (await governance.RegisterContract(register(name, V1))).contract
    second = (await governance.RegisterContract(register(name, V2))).contract
    by_version = await governance.GetContract(
        pb.GetContractRequest(subject_version=pb.SubjectVersion(subject=name, version=1))
    )
    latest = await governance.GetContract(
        pb.GetContractRequest(subject_version=pb.SubjectVersion(subject=name))
    )
    by_id = await governance.GetContract(pb.GetContractRequest(id=first.id))
    assert by_version.contract == first
    assert latest.contract == second
    assert by_id.contract == first
    assert json.loads(latest.contract.schema_json) == V2


async def test_get_unknown_contract_is_not_found(governance, name):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await governance.GetContract(
            pb.GetContractRequest(subject_version=pb.SubjectVersion(subject=name, version=3))
        )
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await governance.GetContract(pb.GetContractRequest(id=2**60))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_list_subjects_reports_latest_version_and_mode(governance, name):
    await governance.RegisterContract(register(f"{name}-a", V1))
    await governance.RegisterContract(register(f"{name}-a", V2))
    await governance.SetCompatibility(
        pb.SetCompatibilityRequest(subject=f"{name}-b", compatibility=pb.FULL)
    )
    await governance.RegisterContract(register(f"{name}-b", V1))
    listed = await governance.ListSubjects(pb.ListSubjectsRequest())
    mine = [
        (s.subject, s.latest_version, s.compatibility)
        for s in listed.subjects
        if s.subject.startswith(name)
    ]
    assert mine == [(f"{name}-a", 2, pb.BACKWARD), (f"{name}-b", 1, pb.FULL)]


async def test_concurrent_registrations_get_distinct_versions_and_ids(governance, name):
    await governance.SetCompatibility(
        pb.SetCompatibilityRequest(subject=name, compatibility=pb.NONE)
    )
    schemas = [{"type": "object", "title": f"v{i}"} for i in range(8)]
    responses = await asyncio.gather(
        *(governance.RegisterContract(register(name, schema)) for schema in schemas)
    )
    assert sorted(r.contract.version for r in responses) == list(range(1, 9))
    assert len({r.contract.id for r in responses}) == 8


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.RegisterContractRequest(subject="ok", schema_json="{not json"), "schema_json"),
        (pb.RegisterContractRequest(subject="ok", schema_json='{"type": 12}'), "schema_json"),
        (pb.RegisterContractRequest(subject="ok", schema_json="[1, 2]"), "schema_json"),
        (pb.RegisterContractRequest(subject="has space", schema_json="{}"), "subject"),
        (pb.RegisterContractRequest(subject="", schema_json="{}"), "subject"),
        (pb.RegisterContractRequest(subject="ok", schema_json="{}", status=42), "status"),
        (
            pb.RegisterContractRequest(subject="ok", schema_json=json.dumps({"x": "y" * 300_000})),
            "schema_json",
        ),
    ],
    ids=[
        "not-json",
        "bad-type",
        "array",
        "bad-subject",
        "empty-subject",
        "unknown-status",
        "too-big",
    ],
)
async def test_bad_registration_is_invalid_argument_naming_the_field(
    governance, governance_etcd, request_, field
):
    before = await governance_etcd.get_prefix("/tessera/governance/subjects/ok/")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await governance.RegisterContract(request_)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(caught.value)
    after = await governance_etcd.get_prefix("/tessera/governance/subjects/ok/")
    assert after.items == before.items == ()


async def test_malformed_schema_error_says_where(governance):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await governance.CheckCompatibility(
            pb.CheckCompatibilityRequest(subject="ok", schema_json='{"type": "object",\n  "x": }')
        )
    assert "line 2" in violations(caught.value)["schema_json"]


async def test_unknown_compatibility_mode_is_invalid_argument(governance, name):
    for value in (pb.COMPATIBILITY_MODE_UNSPECIFIED, 99):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await governance.SetCompatibility(
                pb.SetCompatibilityRequest(subject=name, compatibility=value)
            )
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "compatibility" in violations(caught.value)
