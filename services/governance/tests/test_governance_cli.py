from __future__ import annotations

import asyncio
import json
import re

from typer.testing import CliRunner

from tessera.client.cli._app import app

V1 = {"type": "object", "properties": {"id": {"type": "integer"}}, "additionalProperties": False}
V2_NARROWED = {**V1, "properties": {"id": {"type": "string"}}}


async def tessera(*args: str) -> tuple[int, str]:
    # The server runs on this test's event loop; the CLI blocks, so it runs in a thread.
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args))
    return result.exit_code, result.output


async def test_contract_push_check_get_ls(tmp_path, governance_target, name):
    v1, v2 = tmp_path / "v1.json", tmp_path / "v2.json"
    v1.write_text(json.dumps(V1))
    v2.write_text(json.dumps(V2_NARROWED))
    target = ["--target", governance_target]
    code, out = await tessera("gov", "contract", "push", name, str(v1), "--owner", "me", *target)
    assert code == 0
    assert re.fullmatch(rf"registered {name} version 1 \(id \d+\)", out.strip())
    code, out = await tessera("gov", "contract", "check", name, str(v2), "--json", *target)
    assert code == 1
    report = json.loads(out)
    assert not report["compatible"]
    assert [(i["path"], i["kind"]) for i in report["incompatibilities"]] == [
        ("/properties/id/type", "TYPE_NARROWED")
    ]
    code, out = await tessera("gov", "contract", "push", name, str(v2), *target)
    assert code == 1
    assert "refused" in out
    code, out = await tessera("gov", "contract", "get", name, *target)
    assert code == 0
    shown = json.loads(out)
    assert (shown["version"], shown["owner"], shown["schema"]) == (1, "me", V1)
    code, out = await tessera("gov", "contract", "ls", "--json", *target)
    assert code == 0
    assert {"name": name, "latest_version": 1, "compatibility": "BACKWARD"} in json.loads(out)


async def test_rules_put_and_validate_a_jsonl_file(tmp_path, governance_target, name):
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            {
                "name": name,
                "rules": [
                    {"name": "adult", "expression": "record.age >= 18", "message": "too young"}
                ],
            }
        )
    )
    records = tmp_path / "people.jsonl"
    records.write_text('{"age": 30}\n\n{"age": 12}\n')
    target = ["--target", governance_target]
    code, out = await tessera("gov", "rules", "put", str(rules), *target)
    assert (code, out.strip()) == (0, f"stored rule set {name} version 1")
    code, out = await tessera("gov", "validate", str(records), "-r", name, *target)
    assert code == 1
    assert "too young" in out
    assert "1 of 2 records valid" in out
    records.write_text('{"age": 30}\n')
    code, out = await tessera("gov", "validate", str(records), "-r", name, *target)
    assert (code, out.strip()) == (0, "1 of 1 records valid")


async def test_validate_reports_a_bad_line(tmp_path, governance_target, name):
    records = tmp_path / "bad.jsonl"
    records.write_text('{"age": 30}\n{nope\n')
    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["gov", "validate", str(records), "-r", name, "--target", governance_target],
    )
    assert result.exit_code == 1
    assert "line 2 is not JSON" in str(result.exception)


async def test_standard_put_lint_and_push_warnings(tmp_path, governance_target, name):
    standard = tmp_path / "standard.json"
    standard.write_text(
        json.dumps(
            {
                "name": name,
                "field_pattern": "[a-z][a-z0-9_]*",
                "required_fields": [{"name": "created_at", "type": "string"}],
            }
        )
    )
    camel = tmp_path / "camel.json"
    camel.write_text(json.dumps({"type": "object", "properties": {"userId": {"type": "integer"}}}))
    target = ["--target", governance_target]
    code, out = await tessera("gov", "standard", "put", str(standard), *target)
    assert (code, out.strip()) == (0, f"stored standard {name} version 1")
    code, out = await tessera("gov", "lint", str(camel), "-s", name, "--json", *target)
    assert code == 1
    assert [(v["path"], v["rule"]) for v in json.loads(out)] == [
        ("/properties/created_at", "REQUIRED_FIELD_MISSING"),
        ("/properties/userId", "FIELD_NAME"),
    ]
    good = tmp_path / "good.json"
    good.write_text(
        json.dumps(
            {
                "type": "object",
                "properties": {"created_at": {"type": "string"}},
                "required": ["created_at"],
            }
        )
    )
    code, out = await tessera("gov", "lint", str(good), "-s", name, *target)
    assert (code, out.strip()) == (0, f"good.json follows {name}")


async def test_rules_check_compiles_offline(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(
        json.dumps({"name": "r", "rules": [{"name": "a", "expression": "record.x > 1"}]})
    )
    code, out = await tessera("gov", "rules", "check", str(good))
    assert (code, out.strip()) == (0, "r: 1 rules compile")
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "name": "r",
                "rules": [
                    {"name": "a", "expression": "record.x > 1"},
                    {"name": "b", "expression": "record.x >"},
                ],
            }
        )
    )
    code, out = await tessera("gov", "rules", "check", str(bad))
    assert code == 1
    assert out.startswith("rules[1] (b): line 1, column 11: Syntax error")


async def test_rule_file_with_an_unknown_field_is_refused(tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps({"name": "r", "rules": [{"name": "a", "expression": "true", "level": 3}]})
    )
    result = await asyncio.to_thread(CliRunner().invoke, app, ["gov", "rules", "check", str(rules)])
    assert result.exit_code == 1
    assert "unexpected keyword argument 'level'" in str(result.exception)
    assert [v.field for v in result.exception.violations] == ["rule_set_file"]
