"""Rule evaluation: a five-rule CEL set through EvaluateBatch, against the ceiling and the peer.

Usage: ``python bench/governance_evaluate.py [--duration S] [--warmup S] [--concurrency N]
[--json] [--target HOST:PORT] [--smoke]``

The same five checks on the same records (units: records/s), one batch of 500 per operation:

- ``python_function`` (ceiling): the checks as a hand-written Python function on parsed dicts.
- ``fastjsonschema`` (peer): the checks as one JSON Schema compiled by fastjsonschema, on dicts.
- ``cel_rule_set_cel_cpp``: the rule set on the ``cel`` engine with its Python translation
  turned off (``CelEngine(translate=False)``: every record through cel-cpp), in this process.
- ``cel_rule_set``: the rule set compiled by the ``cel`` engine, evaluated in this process with
  per-rule verdicts (``CompiledRuleSet.evaluate_many``, what the service runs), on dicts;
  compared with ``fastjsonschema``.
- ``evaluate_batch``: ``Governance.EvaluateBatch`` on the service, one stream per operation
  carrying 500 JSON records, per-rule results back; compared with ``python_function``. The goal
  (issue 6) is 100,000 records/s per service process.

The script starts etcd and the governance service in child processes; with ``--target`` it
measures that service and skips the in-process baselines.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import fastjsonschema
import grpc
from _governance_stack import governance_stack
from harness import BenchOptions, Comparison, Endpoint, ServerHandle, measure, run

from tessera.core.plugins import RULE_ENGINES, load_plugins
from tessera.governance._rule_sets import CompiledRuleSet, RuleSetSpec, RuleSpec
from tessera.proto.governance.v1 import governance_pb2_grpc, rules_pb2
from tessera.rule_engines import CelEngine

BATCH = 500
RULES = {
    "age": "record.age >= 0 && record.age <= 150",
    "email": "record.email.matches('^[^@]+@[^@]+$')",
    "status": "record.status in ['active', 'pending', 'closed']",
    "amount": "record.amount < 1000000.0",
    "id": "size(record.id) == 12",
}
SCHEMA = {
    "type": "object",
    "required": ["age", "email", "status", "amount", "id"],
    "properties": {
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "email": {"type": "string", "pattern": "^[^@]+@[^@]+$"},
        "status": {"enum": ["active", "pending", "closed"]},
        "amount": {"type": "number", "exclusiveMaximum": 1000000},
        "id": {"type": "string", "minLength": 12, "maxLength": 12},
    },
}
_EMAIL = re.compile(r"^[^@]+@[^@]+$")
_STATUSES = frozenset({"active", "pending", "closed"})


def records() -> list[dict[str, Any]]:
    # Every tenth record breaks one rule, so failures are reported too.
    out = []
    for i in range(BATCH):
        record: dict[str, Any] = {
            "id": f"{i:012d}",
            "age": i % 120,
            "email": f"user{i}@example.org",
            "status": ("active", "pending", "closed")[i % 3],
            "amount": i * 10.5,
        }
        if i % 10 == 0:
            record["email"] = "no-at-sign"
        out.append(record)
    return out


def python_checks(record: Mapping[str, Any]) -> list[bool]:
    age, amount = record.get("age"), record.get("amount")
    return [
        isinstance(age, int) and 0 <= age <= 150,
        isinstance(record.get("email"), str) and _EMAIL.match(record["email"]) is not None,
        record.get("status") in _STATUSES,
        isinstance(amount, int | float) and amount < 1_000_000,
        isinstance(record.get("id"), str) and len(record["id"]) == 12,
    ]


def in_process(check: Callable[[dict[str, Any]], object]) -> Callable[[], Awaitable[None]]:
    batch = records()

    async def operation() -> None:
        for record in batch:
            check(record)

    return operation


def fastjsonschema_check() -> Callable[[dict[str, Any]], object]:
    validate = fastjsonschema.compile(SCHEMA)

    def check(record: dict[str, Any]) -> bool:
        try:
            validate(record)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    return check


def cel_rule_set(*, translate: bool = True) -> CompiledRuleSet:
    spec = RuleSetSpec(
        name="bench",
        version=1,
        engine="cel",
        rules=tuple(
            RuleSpec(name, text, f"{name} failed", "ERROR", "ENFORCE")
            for name, text in RULES.items()
        ),
    )
    engine = load_plugins(RULE_ENGINES).get("cel").create()
    return CompiledRuleSet(spec, engine if translate else CelEngine(translate=False))


def in_process_batch(rule_set: CompiledRuleSet) -> Callable[[], Awaitable[None]]:
    batch = records()

    async def operation() -> None:
        rule_set.evaluate_many(batch)

    return operation


async def evaluate_batch(
    endpoint: Endpoint, server: ServerHandle | None, options: BenchOptions
) -> Any:
    payload = [json.dumps(record).encode() for record in records()]
    async with grpc.aio.insecure_channel(str(endpoint)) as channel:
        stub = governance_pb2_grpc.GovernanceStub(channel)
        name = f"bench-{uuid.uuid4().hex[:8]}"
        rules = [
            rules_pb2.Rule(name=n, expression=e, message=f"{n} failed") for n, e in RULES.items()
        ]
        await stub.PutRuleSet(
            rules_pb2.PutRuleSetRequest(rule_set=rules_pb2.RuleSet(name=name, rules=rules))
        )
        request = rules_pb2.EvaluateBatchRequest(rule_set=name, version=1, records_json=payload)

        async def operation() -> None:
            async for response in stub.EvaluateBatch(iter([request])):
                if len(response.results) != BATCH:
                    raise RuntimeError(f"got {len(response.results)} results for {BATCH} records")

        return await measure(
            "evaluate_batch", operation, options, units_per_op=BATCH, server=server
        )


async def bench(options: BenchOptions) -> list[Comparison]:
    if options.target is not None:
        return [Comparison(await evaluate_batch(options.target, None, options))]
    ceiling = await measure(
        "python_function", in_process(python_checks), options, units_per_op=BATCH
    )
    peer = await measure(
        "fastjsonschema", in_process(fastjsonschema_check()), options, units_per_op=BATCH
    )
    cel_cpp = await measure(
        "cel_rule_set_cel_cpp",
        in_process_batch(cel_rule_set(translate=False)),
        options,
        units_per_op=BATCH,
    )
    engine = await measure(
        "cel_rule_set", in_process_batch(cel_rule_set()), options, units_per_op=BATCH
    )
    async with governance_stack() as server:
        ours = await evaluate_batch(server.endpoint, server, options)
    return [Comparison(cel_cpp, peer), Comparison(engine, peer), Comparison(ours, ceiling)]


if __name__ == "__main__":
    sys.exit(run(__doc__ or "", bench))
