from __future__ import annotations

import hashlib
import json
import random

import grpc
import pytest
import structlog.testing
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tessera.governance import GovernanceSettings, governance_binding
from tessera.governance._audit import DecisionAudit
from tessera.governance._rule_sets import RuleSetSpec
from tessera.proto.governance.v1 import governance_pb2_grpc
from tessera.proto.governance.v1 import rules_pb2 as pb

RULES = [
    pb.Rule(name="adult", expression="record.age >= 18", message="must be an adult"),
    pb.Rule(
        name="email",
        expression="record.email.contains('@')",
        message="email needs an @",
        severity=pb.WARNING,
    ),
    pb.Rule(name="vip", expression="record.tier == 'gold'", message="not gold", mode=pb.SHADOW),
]


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    found: dict[str, str] = {}
    for detail in rpc_status.from_call(error).details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            found.update((v.field, v.description) for v in bad_request.field_violations)
    return found


async def put(governance, name, rules=RULES, engine=""):
    response = await governance.PutRuleSet(
        pb.PutRuleSetRequest(rule_set=pb.RuleSet(name=name, engine=engine, rules=rules))
    )
    return response.rule_set


def outcomes(result: pb.RecordResult) -> dict[str, tuple[int, str]]:
    return {r.rule: (r.outcome, r.message) for r in result.results}


async def test_put_allocates_versions_and_get_returns_them(governance, name):
    first = await put(governance, name)
    second = await put(governance, name, RULES[:1])
    assert (first.version, second.version) == (1, 2)
    assert first.engine == "cel"
    assert first.rules[0].severity == pb.ERROR
    assert first.rules[0].mode == pb.ENFORCE
    latest = await governance.GetRuleSet(pb.GetRuleSetRequest(name=name))
    assert latest.rule_set == second
    old = await governance.GetRuleSet(pb.GetRuleSetRequest(name=name, version=1))
    assert old.rule_set == first


async def test_evaluate_record_reports_each_rule(governance, name):
    await put(governance, name)
    record = {"age": 12, "email": "nobody", "tier": "silver"}
    response = await governance.EvaluateRecord(
        pb.EvaluateRecordRequest(rule_set=name, record_json=json.dumps(record).encode())
    )
    assert response.version == 1
    assert not response.result.valid
    assert outcomes(response.result) == {
        "adult": (pb.FAILED, "must be an adult"),
        "email": (pb.FAILED, "email needs an @"),
        "vip": (pb.FAILED, "not gold"),
    }


async def test_warnings_and_shadow_rules_do_not_invalidate(governance, name):
    await put(governance, name)
    record = {"age": 30, "email": "nobody", "tier": "silver"}
    response = await governance.EvaluateRecord(
        pb.EvaluateRecordRequest(rule_set=name, record_json=json.dumps(record).encode())
    )
    assert response.result.valid
    assert [r.outcome for r in response.result.results] == [pb.PASSED, pb.FAILED, pb.FAILED]
    assert response.result.results[2].mode == pb.SHADOW


async def test_missing_field_is_an_errored_rule_not_a_failed_call(governance, name):
    await put(governance, name)
    response = await governance.EvaluateRecord(
        pb.EvaluateRecordRequest(rule_set=name, record_json=b'{"email": "a@b", "tier": "gold"}')
    )
    assert not response.result.valid
    adult = response.result.results[0]
    assert adult.outcome == pb.ERRORED
    assert "age" in adult.message


async def test_evaluate_batch_streams_one_response_per_message(governance, name):
    await put(governance, name)
    good = json.dumps({"age": 30, "email": "a@b", "tier": "gold"}).encode()
    bad = json.dumps({"age": 3, "email": "a@b", "tier": "gold"}).encode()

    async def requests():
        yield pb.EvaluateBatchRequest(rule_set=name, records_json=[good, bad])
        yield pb.EvaluateBatchRequest(records_json=[bad] * 20 + [good] * 20)

    responses = [response async for response in governance.EvaluateBatch(requests())]
    assert [len(r.results) for r in responses] == [2, 40]
    assert [r.valid for r in responses[0].results] == [True, False]
    assert [r.valid for r in responses[1].results] == [False] * 20 + [True] * 20
    assert {r.version for r in responses} == {1}


async def test_evaluating_an_older_version(governance, name):
    await put(governance, name, [pb.Rule(name="r", expression="record.x > 1")])
    await put(governance, name, [pb.Rule(name="r", expression="record.x > 5")])
    for version, valid in ((1, True), (2, False), (0, False)):
        response = await governance.EvaluateRecord(
            pb.EvaluateRecordRequest(rule_set=name, version=version, record_json=b'{"x": 3}')
        )
        assert response.result.valid is valid


async def test_jsonschema_engine_rule_sets(governance, name):
    schema = json.dumps({"required": ["id"], "properties": {"id": {"type": "integer"}}})
    await put(governance, name, [pb.Rule(name="shape", expression=schema)], engine="jsonschema")
    response = await governance.EvaluateRecord(
        pb.EvaluateRecordRequest(rule_set=name, record_json=b'{"id": "x"}')
    )
    assert [r.outcome for r in response.result.results] == [pb.FAILED]


@pytest.mark.parametrize(
    ("rules", "engine", "field", "says"),
    [
        (
            [pb.Rule(name="r", expression="record.age >= ")],
            "",
            "rule_set.rules[0].expression",
            "line 1, column 15",
        ),
        (
            [pb.Rule(name="a", expression="true"), pb.Rule(name="b", expression="record.x + 1")],
            "",
            "rule_set.rules[1].expression",
            "bool",
        ),
        (
            [pb.Rule(name="r", expression="record.a.all(x, record.a.exists(y, y == x))")],
            "",
            "rule_set.rules[0].expression",
            "cost",
        ),
        ([pb.Rule(name="r", expression="true")] * 2, "", "rule_set.rules[1].name", "repeated"),
        ([pb.Rule(name="bad name", expression="true")], "", "rule_set.rules[0].name", "letters"),
        (
            [pb.Rule(name="r", expression="true", severity=9)],
            "",
            "rule_set.rules[0].severity",
            "unknown",
        ),
        ([], "", "rule_set.rules", "at least one"),
        ([pb.Rule(name="r", expression="true")], "nope", "rule_set.engine", "installed"),
    ],
    ids=["syntax", "not-bool", "cost", "duplicate", "name", "severity", "empty", "engine"],
)
async def test_bad_rule_set_is_refused_and_nothing_is_stored(
    governance, governance_etcd, name, rules, engine, field, says
):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await put(governance, name, rules, engine)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert says in violations(caught.value)[field]
    stored = await governance_etcd.get_prefix(f"/tessera/governance/rulesets/{name}/")
    assert stored.items == ()


@pytest.mark.parametrize(
    ("record", "says"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"pad": "x" * 2000}).encode(), "over the record size limit of 1024"),
    ],
    ids=["not-json", "not-object", "too-big"],
)
async def test_bad_record_is_invalid_argument_naming_the_field(governance, name, record, says):
    await put(governance, name)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await governance.EvaluateRecord(pb.EvaluateRecordRequest(rule_set=name, record_json=record))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert says in violations(caught.value)["record_json"]


async def test_bad_record_in_a_batch_names_its_index(governance, name):
    await put(governance, name)

    async def requests():
        yield pb.EvaluateBatchRequest(rule_set=name, records_json=[b"{}", b"{}", b"nope"])

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _ = [response async for response in governance.EvaluateBatch(requests())]
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "records_json[2]" in violations(caught.value)


async def test_unknown_rule_set_is_not_found(governance, name):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await governance.EvaluateRecord(pb.EvaluateRecordRequest(rule_set=name, record_json=b"{}"))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_decisions_are_sampled_for_audit_without_the_record(
    running_service, governance_etcd, name
):
    settings = GovernanceSettings(port=0, metrics_port=None, audit_sample_rate=1.0)
    service = await running_service([governance_binding(governance_etcd, settings)], settings)
    stub = governance_pb2_grpc.GovernanceStub(service.channel)
    await put(stub, name)
    record = json.dumps({"age": 3, "email": "secret@example.org", "tier": "gold"}).encode()
    with structlog.testing.capture_logs() as logs:
        await stub.EvaluateRecord(pb.EvaluateRecordRequest(rule_set=name, record_json=record))

        async def requests():
            yield pb.EvaluateBatchRequest(rule_set=name, records_json=[record] * 20)

        _ = [response async for response in stub.EvaluateBatch(requests())]
    audited = [entry for entry in logs if entry["event"] == "rule decision"]
    assert len(audited) == 21
    assert audited[0]["rule_set"] == name
    assert audited[0]["valid"] is False
    assert audited[0]["not_passed"] == {"adult": "FAILED"}
    assert audited[0]["record_sha256"] == hashlib.sha256(record).hexdigest()
    assert "secret" not in repr(audited)


def test_audit_rate_zero_logs_nothing_and_rate_samples_about_that_fraction():
    spec = RuleSetSpec(name="r", version=1, engine="cel", rules=())
    with structlog.testing.capture_logs() as logs:
        DecisionAudit(0.0).sample(spec, b"{}", True, [])
        sampled = DecisionAudit(0.25, random.Random(7))
        for _ in range(4000):
            sampled.sample(spec, b"{}", True, [])
    assert 850 < len(logs) < 1150


def test_batch_audit_samples_about_the_rate_across_batches_and_the_right_records():
    spec = RuleSetSpec(name="r", version=1, engine="cel", rules=())
    raws = [str(index).encode() for index in range(100)]
    outcomes = [(index % 2 == 0, []) for index in range(100)]
    with structlog.testing.capture_logs() as logs:
        DecisionAudit(0.0).sample_many(spec, raws, outcomes)
        assert logs == []
        sampled = DecisionAudit(0.25, random.Random(7))
        for _ in range(40):  # 4,000 decisions in batches of 100: gaps run across batches
            sampled.sample_many(spec, raws, outcomes)
        every = DecisionAudit(1.0)
        every.sample_many(spec, raws[:3], outcomes[:3])
    assert 850 < len(logs) - 3 < 1150
    # Each line describes its own record: the digest and the verdict belong together.
    digests = {hashlib.sha256(raw).hexdigest(): index for index, raw in enumerate(raws)}
    for entry in logs:
        assert entry["valid"] is (digests[entry["record_sha256"]] % 2 == 0)
    assert [digests[entry["record_sha256"]] for entry in logs[-3:]] == [0, 1, 2]
