"""Each command of the Commands stream is measured and traced as the unary call it stands for.

Metrics: a real lock service on etcd with its metrics endpoint, scraped over HTTP. Spans: a real
`python -m tessera.lock` process exporting them to its stdout, so this module leaves tracing
unconfigured in the test process (configuring it is once per process, for every later test).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from tessera.client.lock import LockClient
from tessera.core.embedded import EtcdServer, free_ports
from tessera.lock import LockSettings, lock_binding
from tessera.lock_backends import EtcdLockBackend
from tessera.proto.lock.v1 import lock_pb2, lock_pb2_grpc
from tessera.testing import RunningService, ServiceStarter

SERVICE = "tessera.lock.v1.Lock"
COMMANDS = f"/{SERVICE}/Commands"
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
EXCLUSIVE = lock_pb2.LOCK_MODE_EXCLUSIVE

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
Until = Callable[[Callable[[], Awaitable[bool]]], Awaitable[None]]
Span = dict[str, Any]  # as OpenTelemetry's ConsoleSpanExporter writes it


@pytest_asyncio.fixture
async def observed_lock(
    lock_settings: LockSettings, lock_backend: EtcdLockBackend, running_service: ServiceStarter
) -> RunningService:
    settings = lock_settings.model_copy(update={"metrics_port": 0})
    return await running_service([lock_binding(settings, lock_backend)], settings)


async def _scrape(service: RunningService) -> Samples:
    port = service.server.metrics_port

    def fetch() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text: str = response.read().decode()
            return text

    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(await asyncio.to_thread(fetch))
        for sample in family.samples
    }


def _labels(method: str, **more: str) -> frozenset[tuple[str, str]]:
    return frozenset({"service": SERVICE, "method": method, **more}.items())


async def _has_waiters(client: LockClient, name: str, expected: list[str]) -> bool:
    return [waiter.session_id for waiter in (await client.describe(name)).waiters] == expected


async def test_lock_commands_are_counted_per_method_with_their_codes(
    observed_lock: RunningService, until: Until
) -> None:
    client = LockClient(observed_lock.channel)
    stub = lock_pb2_grpc.LockStub(observed_lock.channel)
    name = f"observed/{uuid.uuid4().hex}"
    holder, waiter = await client.open_session(10), await client.open_session(10)
    try:
        for _ in range(3):  # the SDK sends these as messages of its Commands stream
            held = await client.try_acquire(name, holder)
            assert held is not None
            assert await client.release(held)
        held = await client.acquire(name, holder, wait=0)
        assert held is not None

        # Cancelled by a cancel command: the SDK sends one for a caller cancelled while waiting.
        waiting = asyncio.create_task(client.acquire(name, waiter, wait=30))
        await until(lambda: _has_waiters(client, name, [waiter.id]))
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await until(lambda: _has_waiters(client, name, []))

        # A bad name on a raw stream: answered INVALID_ARGUMENT, as the TryAcquire call is.
        call = stub.Commands()
        bad = lock_pb2.AcquireRequest(name="", session_id=holder.id)
        await call.write(lock_pb2.LockCommand(id=1, try_acquire=bad))
        async with asyncio.timeout(5):
            answer = await call.read()
        assert answer.error.code == INVALID_ARGUMENT
        # Still waiting when its stream ends (the client goes away): cancelled with the stream.
        blocked = lock_pb2.AcquireRequest(name=name, session_id=waiter.id, mode=EXCLUSIVE)
        blocked.wait_timeout.FromSeconds(30)
        await call.write(lock_pb2.LockCommand(id=2, acquire=blocked))
        await until(lambda: _has_waiters(client, name, [waiter.id]))
        # The id of a command still running: answered at once, INVALID_ARGUMENT, as an Acquire.
        await call.write(lock_pb2.LockCommand(id=2, acquire=blocked))
        async with asyncio.timeout(5):
            answer = await call.read()
        assert answer.error.code == INVALID_ARGUMENT
        call.cancel()
        await until(lambda: _has_waiters(client, name, []))
        assert await client.release(held)
    finally:
        await holder.close()
        await waiter.close()
        await client.close()

    async def all_finished() -> bool:
        samples = await _scrape(observed_lock)
        return all(
            samples.get(("tessera_grpc_server_in_flight", _labels(method))) == 0
            for method in ("Acquire", "TryAcquire", "Release")
        )

    await until(all_finished)
    samples = await _scrape(observed_lock)
    requests = {
        method: samples[("tessera_grpc_server_requests_total", _labels(method))]
        for method in ("Acquire", "TryAcquire", "Release")
    }
    assert requests == {"Acquire": 4, "TryAcquire": 4, "Release": 4}
    for method, count in requests.items():
        duration_count = ("tessera_grpc_server_request_duration_seconds_count", _labels(method))
        assert samples[duration_count] == count
    errors = {
        (dict(labels)["method"], dict(labels)["code"]): value
        for (metric, labels), value in samples.items()
        if metric == "tessera_grpc_server_errors_total"
        and dict(labels)["method"] in ("Acquire", "TryAcquire", "Release")
    }
    assert errors == {
        ("Acquire", "CANCELLED"): 2,
        ("Acquire", "INVALID_ARGUMENT"): 1,
        ("TryAcquire", "INVALID_ARGUMENT"): 1,
    }
    # The streams are still counted as calls of their own.
    assert samples[("tessera_grpc_server_requests_total", _labels("Commands"))] >= 2


class _SpanLog:
    """The spans a process writes to its stdout, read as they come."""

    def __init__(self, stdout: asyncio.StreamReader) -> None:
        self._stdout = stdout
        self._text = ""
        self._spans: list[Span] = []

    async def until(self, names: Sequence[str]) -> list[Span]:
        """All spans so far, once those named `names` (with repeats) are among them (5 s)."""
        decoder = json.JSONDecoder()
        async with asyncio.timeout(5):
            while True:
                found = [span["name"] for span in self._spans]
                if all(found.count(name) >= names.count(name) for name in names):
                    return self._spans
                chunk = await self._stdout.read(65536)
                assert chunk, f"the process ended; spans so far: {found}"
                self._text += chunk.decode()
                while text := self._text.lstrip():  # indented JSON objects, one after another
                    try:
                        span, end = decoder.raw_decode(text)
                    except json.JSONDecodeError:
                        break  # the rest of the object is still on its way
                    self._spans.append(span)
                    self._text = text[end:]


@asynccontextmanager
async def _traced_lock_process(etcd: EtcdServer) -> AsyncIterator[tuple[str, _SpanLog]]:
    """Run `python -m tessera.lock` with the console span exporter; yield its address and spans."""
    port, metrics_port = free_ports(2)
    env = {
        **os.environ,
        "TESSERA_PORT": str(port),
        "TESSERA_METRICS_PORT": str(metrics_port),
        "TESSERA_ETCD_ENDPOINTS": etcd.endpoint,
        "TESSERA_TRACE_EXPORTER": "console",
        "OTEL_BSP_SCHEDULE_DELAY": "20",  # milliseconds: spans reach stdout right after they end
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tessera.lock",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        yield f"127.0.0.1:{port}", _SpanLog(process.stdout)
    finally:
        process.kill()
        await process.wait()


async def _answers(
    stub: lock_pb2_grpc.LockStub, commands: Sequence[lock_pb2.LockCommand]
) -> list[lock_pb2.LockCommandResult]:
    """Send the commands on a new stream one at a time, each after the previous answer."""
    call = stub.Commands()
    answers = []
    for command in commands:
        await call.write(command)
        async with asyncio.timeout(5):
            answers.append(await call.read())
    await call.done_writing()
    return answers


async def test_each_lock_command_has_a_span_under_its_streams_span(
    etcd_server: EtcdServer,
) -> None:
    name = f"observed/{uuid.uuid4().hex}"
    async with (
        _traced_lock_process(etcd_server) as (address, span_log),
        grpc.aio.insecure_channel(address) as channel,
    ):
        await asyncio.wait_for(channel.channel_ready(), 30)
        client = LockClient(channel)
        stub = lock_pb2_grpc.LockStub(channel)
        session = await client.open_session(10)
        take = lock_pb2.AcquireRequest(name=name, session_id=session.id, mode=EXCLUSIVE)
        (granted,) = await _answers(stub, [lock_pb2.LockCommand(id=1, try_acquire=take)])
        assert granted.acquired.acquired
        token = granted.acquired.token
        release = lock_pb2.ReleaseRequest(name=name, session_id=session.id, token=token)
        bad = lock_pb2.AcquireRequest(name="", session_id=session.id)
        answers = await _answers(
            stub,
            [
                lock_pb2.LockCommand(id=1, release=release),
                lock_pb2.LockCommand(id=2, try_acquire=bad),
            ],
        )
        assert [answer.WhichOneof("result") for answer in answers] == ["released", "error"]
        await session.close()
        await client.close()
        spans = await span_log.until(
            [
                COMMANDS,
                COMMANDS,
                f"/{SERVICE}/TryAcquire",
                f"/{SERVICE}/TryAcquire",
                f"/{SERVICE}/Release",
            ]
        )

    streams = {s["context"]["span_id"] for s in spans if s["name"] == COMMANDS}
    assert len(streams) == 2
    assert all(s["kind"] == "SpanKind.SERVER" for s in spans if s["name"] == COMMANDS)
    commands = {
        (s["name"], s["attributes"]["rpc.grpc.status_code"]): s
        for s in spans
        if s["name"] in (f"/{SERVICE}/TryAcquire", f"/{SERVICE}/Release")
    }
    granted_span = commands[(f"/{SERVICE}/TryAcquire", 0)]
    released_span = commands[(f"/{SERVICE}/Release", 0)]
    failed_span = commands[(f"/{SERVICE}/TryAcquire", INVALID_ARGUMENT)]
    # The first stream carried the grant, the second the release and the failure.
    assert granted_span["parent_id"] in streams
    assert released_span["parent_id"] == failed_span["parent_id"]
    assert released_span["parent_id"] in streams - {granted_span["parent_id"]}
    for span in (granted_span, released_span, failed_span):
        assert span["kind"] == "SpanKind.SERVER"
        assert span["context"]["trace_id"] == next(
            s["context"]["trace_id"] for s in spans if s["context"]["span_id"] == span["parent_id"]
        )
    assert granted_span["attributes"] == {
        "rpc.system": "grpc",
        "rpc.service": SERVICE,
        "rpc.method": "TryAcquire",
        "rpc.grpc.status_code": 0,
        "tessera.lock.name": name,
        "tessera.lock.outcome": "acquired",
        "tessera.lock.token": token,
    }
    assert released_span["attributes"] == {
        "rpc.system": "grpc",
        "rpc.service": SERVICE,
        "rpc.method": "Release",
        "rpc.grpc.status_code": 0,
        "tessera.lock.name": name,
        "tessera.lock.outcome": "released",
        "tessera.lock.token": token,
    }
    assert failed_span["attributes"]["rpc.method"] == "TryAcquire"
    assert "tessera.lock.outcome" not in failed_span["attributes"]
    # A client's mistake, not the server's: not an error span, as on the unary call's span.
    assert failed_span["status"]["status_code"] == "UNSET"
    # The backend's etcd calls made for a command are traced under the command's span.
    assert any(s["parent_id"] == granted_span["context"]["span_id"] for s in spans)
