"""Compatibility checks of two 200-field JSON Schemas, in process and through the service.

Usage: ``python bench/governance_compatibility.py [--duration S] [--warmup S] [--concurrency N]
[--json] [--target HOST:PORT] [--smoke]``

Cases:

- ``governance_unary_echo`` (floor): Diagnostics.Echo on the governance service.
- ``check_200_fields``: ``reader_incompatibilities`` on a 200-field object schema (every property
  typed, bounded, some with enums and patterns) against a version that changes 20 of them, in
  this process: the pure cost of the comparison.
- ``check_compatibility_rpc``: ``Governance.CheckCompatibility`` of the new schema against a
  subject holding the old one (one etcd read, parse, compare, reply), compared with the floor.
  The goal (issue 6) is 50 ms or less per check.

The script starts etcd and the governance service in child processes; with ``--target`` it
measures that service (registering a fresh subject on it).
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any

import grpc
from _governance_stack import governance_stack
from floor import echo_client
from harness import BenchOptions, CaseResult, Comparison, Endpoint, ServerHandle, measure, run

from tessera.governance import reader_incompatibilities
from tessera.proto.governance.v1 import contracts_pb2, governance_pb2_grpc

FIELDS = 200


def schema(changed: int) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for i in range(FIELDS):
        kind = i % 4
        if kind == 0:
            field: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": 1000}
        elif kind == 1:
            field = {"type": "string", "maxLength": 64, "pattern": "^[a-z]+$"}
        elif kind == 2:
            field = {"enum": ["a", "b", "c", "d"]}
        else:
            field = {"type": "array", "items": {"type": "number"}}
        if i < changed:  # the new version widens these: still backward compatible
            field = {**field, "description": f"field {i}, revised"}
            if kind == 0:
                field["maximum"] = 2000
        properties[f"field_{i:03d}"] = field
    return {
        "type": "object",
        "properties": properties,
        "required": [f"field_{i:03d}" for i in range(0, FIELDS, 5)],
        "additionalProperties": False,
    }


OLD, NEW = schema(0), schema(20)


async def in_process(options: BenchOptions) -> CaseResult:
    async def operation() -> None:
        if reader_incompatibilities(NEW, OLD):
            raise RuntimeError("the benchmark schemas must be compatible")

    return await measure("check_200_fields", operation, options)


async def rpc(endpoint: Endpoint, server: ServerHandle | None, options: BenchOptions) -> CaseResult:
    async with grpc.aio.insecure_channel(str(endpoint)) as channel:
        stub = governance_pb2_grpc.GovernanceStub(channel)
        subject = f"bench-{uuid.uuid4().hex[:8]}"
        await stub.RegisterContract(
            contracts_pb2.RegisterContractRequest(subject=subject, schema_json=json.dumps(OLD))
        )
        request = contracts_pb2.CheckCompatibilityRequest(
            subject=subject, schema_json=json.dumps(NEW)
        )

        async def operation() -> None:
            response = await stub.CheckCompatibility(request)
            if not response.compatible:
                raise RuntimeError(f"unexpected incompatibilities: {response.incompatibilities}")

        return await measure("check_compatibility_rpc", operation, options, server=server)


async def bench(options: BenchOptions) -> list[Comparison]:
    pure = await in_process(options)
    if options.target is not None:
        return [Comparison(pure), Comparison(await rpc(options.target, None, options))]
    async with governance_stack() as server:
        async with echo_client(server.endpoint, server) as echo:
            floor = await measure("governance_unary_echo", echo.echo, options, server=server)
        ours = await rpc(server.endpoint, server, options)
    return [Comparison(pure), Comparison(floor), Comparison(ours, floor)]


if __name__ == "__main__":
    sys.exit(run(__doc__ or "", bench))
