"""One trace from an SDK call through the governance service, etcd, Redis and the Celery scan job.

Real processes: the governance service and a worker run as subprocesses that export their spans
over OTLP to a collector this test serves (spans kept in memory); the SDK call's own spans go to
an in-memory exporter in this process.
"""

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tessera.client.devstack._probes import probe_grpc_health
from tessera.client.governance import GovernanceClient
from tessera.core import NotFoundError, TesseraSettings
from tessera.core.embedded import EtcdServer, RedisServer, free_ports
from tessera.core.observability import configure_tracing

SCHEMA = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}


@dataclass(frozen=True)
class CollectedSpan:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace collector that keeps every span it receives."""

    def __init__(self) -> None:
        self.spans: list[CollectedSpan] = []

    async def Export(  # noqa: N802 - the OTLP method name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                self.spans += [
                    CollectedSpan(
                        service=attributes["service.name"],
                        name=span.name,
                        kind=span.kind,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                    )
                    for span in scope.spans
                ]
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest_asyncio.fixture
async def collector() -> AsyncIterator[tuple[Collector, str]]:
    servicer = Collector()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, f"http://127.0.0.1:{port}"
    finally:
        await server.stop(0)


@dataclass
class Processes:
    governance: str
    logs: dict[str, Path]


@pytest_asyncio.fixture
async def traced_processes(
    collector: tuple[Collector, str],
    etcd_server: EtcdServer,
    redis_server: RedisServer,
    tmp_path: Path,
) -> AsyncIterator[Processes]:
    port, metrics_port = free_ports(2)
    env = {
        **os.environ,
        "TESSERA_ETCD_ENDPOINTS": etcd_server.endpoint,
        "TESSERA_REDIS_URL": redis_server.url,
        "TESSERA_TRACE_EXPORTER": "otlp",
        "TESSERA_OTLP_ENDPOINT": collector[1],
        "TESSERA_LOG_FORMAT": "json",
        "TESSERA_SHUTDOWN_GRACE_S": "1",
        # Export finished spans within a tenth of a second instead of OpenTelemetry's 5 s.
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    commands = {
        "governance": [sys.executable, "-m", "tessera.governance"],
        "worker": [
            *(sys.executable, "-m", "tessera.core.jobs", "worker"),
            *("-Q", "governance", "-c", "1", "-P", "solo"),
        ],
    }
    extra = {
        "governance": {
            "TESSERA_PORT": str(port),
            "TESSERA_METRICS_PORT": str(metrics_port),
        },
        "worker": {},
    }
    logs = {name: tmp_path / f"{name}.log" for name in commands}
    running = []
    for name, command in commands.items():
        with logs[name].open("wb") as out:
            running.append(
                await asyncio.create_subprocess_exec(
                    *command,
                    env={**env, **extra[name]},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
    try:
        yield Processes(f"127.0.0.1:{port}", logs)
    finally:
        for process in running:
            process.terminate()
        for process in running:
            # Awaited, not blocked on: the collector on this loop receives their last spans.
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _until_serving(target: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not (await probe_grpc_health(target, 1.0)).healthy:
        assert time.monotonic() < deadline, f"{target} did not start"
        await asyncio.sleep(0.2)


def _descendants(spans: list[CollectedSpan], root_id: str) -> list[CollectedSpan]:
    children: dict[str, list[CollectedSpan]] = {}
    for span in spans:
        children.setdefault(span.parent_id, []).append(span)
    found, frontier = [], [root_id]
    while frontier:
        for child in children.get(frontier.pop(), []):
            found.append(child)
            frontier.append(child.span_id)
    return found


@pytest.mark.timeout(120)
async def test_a_scan_started_by_the_sdk_is_one_trace_through_service_etcd_redis_and_worker(
    collector: tuple[Collector, str], traced_processes: Processes, tmp_path: Path
) -> None:
    exporter = InMemorySpanExporter()
    # Every test module that configures tracing in the test process uses this name: the first
    # call in a process fixes it (see libs/core/tests/test_observability_tracing.py).
    configure_tracing(TesseraSettings(service_name="tessera-test"), span_exporter=exporter)
    await _until_serving(traced_processes.governance, 30)
    subject = f"trace-{uuid.uuid4().hex[:8]}"
    data = tmp_path / "rows.csv"
    data.write_text("id\n1\n2\n")

    async with GovernanceClient.connect(traced_processes.governance) as gov:
        await gov.push_contract(subject, SCHEMA)
        with trace.get_tracer("e2e").start_as_current_span("operator starts a scan") as root:
            scan_id = await gov.start_scan(subject, str(data))
            with pytest.raises(NotFoundError):
                await gov.start_scan(f"{subject}-missing", str(data))
        scan = await gov.wait_for_scan(scan_id, poll_s=0.1, timeout_s=60)
    assert scan.state == "SUCCEEDED"

    trace_id = format(root.get_span_context().trace_id, "032x")
    (client_call,) = [
        s
        for s in exporter.get_finished_spans()
        if s.name.endswith("/StartScan")
        and s.context.trace_id == root.get_span_context().trace_id
        and s.status.is_ok
    ]
    assert client_call.parent is not None
    assert client_call.parent.span_id == root.get_span_context().span_id
    client_id = format(client_call.context.span_id, "016x")

    spans = await _wait_for_trace(collector[0], trace_id)
    (server,) = [s for s in spans if s.parent_id == client_id]
    assert (server.service, server.kind) == ("tessera-governance", 2)  # SERVER
    under_server = _descendants(spans, server.span_id)
    etcd_calls = [
        s
        for s in under_server
        if s.name.startswith("/etcdserverpb.") and s.service == "tessera-governance"
    ]
    assert etcd_calls, "the service's etcd calls are children of its server span"
    (publish,) = [s for s in under_server if s.name == "apply_async/tessera.governance.scan"]
    assert publish.service == "tessera-governance"
    redis_calls = [s for s in _descendants(spans, publish.span_id) if s.kind == 3]  # CLIENT
    assert redis_calls, "the broker's Redis commands are children of the publish span"
    (run,) = [s for s in spans if s.name == "run/tessera.governance.scan"]
    assert (run.service, run.parent_id) == ("tessera-worker", publish.span_id)
    under_run = _descendants(spans, run.span_id)
    assert any(s.name.startswith("/etcdserverpb.") for s in under_run), "job's etcd calls"
    assert {s.service for s in under_run} == {"tessera-worker"}

    # The lines each process logs inside the trace carry its id: the service's error line for the
    # refused call, the worker's line for the finished scan.
    for name, event in (("governance", "rpc failed"), ("worker", "scan_succeeded")):
        lines = [
            json.loads(line)
            for line in traced_processes.logs[name].read_text().splitlines()
            if line.startswith("{")
        ]
        traced = [line for line in lines if line.get("event") == event]
        assert traced, (name, lines[-10:])
        assert {line.get("trace_id") for line in traced} == {trace_id}, name


async def _wait_for_trace(collector: Collector, trace_id: str) -> list[CollectedSpan]:
    # Spans arrive in batches; the worker's run span is the last to end.
    deadline = time.monotonic() + 10
    while True:
        spans = [s for s in collector.spans if s.trace_id == trace_id]
        if any(s.name.startswith("run/") for s in spans) or time.monotonic() > deadline:
            await asyncio.sleep(0.5)  # the run span's children may be in the next batch
            return [s for s in collector.spans if s.trace_id == trace_id]
        await asyncio.sleep(0.1)
