import asyncio
import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tessera.core import TesseraSettings
from tessera.core.server import ServiceServer

TESTS_DIR = Path(__file__).parent
SLOW_SLEEP = "/test.v1.Slow/Sleep"


def _load_slow_server():
    # The same module the child process runs, loaded in-process for the in-process cases.
    path = TESTS_DIR / "server_support" / "slow_server.py"
    spec = importlib.util.spec_from_file_location("server_support_slow_server", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


slow_server = _load_slow_server()


class ChildServer:
    """`python -m server_support.slow_server` in a child process, read through its JSON logs."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict | str] = []

    @classmethod
    async def start(cls) -> "ChildServer":
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TESSERA_")}
        env.update(TESSERA_PORT="0", TESSERA_LOG_FORMAT="json", TESSERA_SHUTDOWN_GRACE_S="10")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server_support.slow_server",
            cwd=TESTS_DIR,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def event(self, event: str) -> dict:
        """The first log line with this event, read so far or waited for (20 s at most)."""
        for line in self.lines:
            if isinstance(line, dict) and line.get("event") == event:
                return line
        async with asyncio.timeout(20):
            while True:
                raw = await self.process.stderr.readline()
                if not raw:
                    raise AssertionError(f"child exited before {event!r}: {self.lines}")
                try:
                    line = json.loads(raw)
                except ValueError:
                    self.lines.append(raw.decode())
                    continue
                self.lines.append(line)
                if line.get("event") == event:
                    return line

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def _health(channel, service: str = "") -> int:
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=2
    )
    return response.status


async def test_sigterm_drains_in_flight_calls_then_exits_zero():
    child = await ChildServer.start()
    try:
        address = (await child.event("server started"))["address"]
        async with grpc.aio.insecure_channel(address) as channel:
            sleep = channel.unary_unary(SLOW_SLEEP)
            assert await _health(channel, slow_server.SLOW_SERVICE) == (
                health_pb2.HealthCheckResponse.SERVING
            )
            in_flight = asyncio.ensure_future(sleep(b"1.5", timeout=15))
            await child.event("sleep started")

            child.process.send_signal(signal.SIGTERM)
            await child.event("server draining")
            for service in ("", slow_server.SLOW_SERVICE):
                assert await _health(channel, service) == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await sleep(b"0", timeout=2)
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
            assert refused.value.details() == "server is shutting down"
            assert not in_flight.done()

            assert await in_flight == b"done"
        async with asyncio.timeout(10):
            assert await child.process.wait() == 0
        stop = await child.event("stop requested")
        assert stop["signal"] == "SIGTERM"
        await child.event("server stopped")
    finally:
        await child.kill()


async def test_serve_without_a_trace_exporter_makes_no_spans():
    # TESSERA_TRACE_EXPORTER is unset in the child ("none"): serve() must not install the
    # tracing interceptor, whose unexported spans would cost every call and still put trace ids
    # in the logs (the test client is instrumented once any test configured tracing).
    child = await ChildServer.start()
    try:
        address = (await child.event("server started"))["address"]
        async with grpc.aio.insecure_channel(address) as channel:
            assert await channel.unary_unary(SLOW_SLEEP)(b"0", timeout=5) == b"done"
        line = await child.event("sleep started")
        assert line["method"] == SLOW_SLEEP
        assert line["peer"].startswith("ipv4:127.0.0.1:")
        assert "trace_id" not in line
        child.process.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            assert await child.process.wait() == 0
    finally:
        await child.kill()


async def test_sigint_stops_an_idle_server_with_exit_zero():
    child = await ChildServer.start()
    try:
        await child.event("server started")
        child.process.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            assert await child.process.wait() == 0
        assert (await child.event("stop requested"))["signal"] == "SIGINT"
    finally:
        await child.kill()


async def test_calls_still_running_when_the_grace_ends_are_cancelled():
    server = ServiceServer(TesseraSettings(), [slow_server.slow_binding()])
    await server.start()
    async with grpc.aio.insecure_channel(server.address) as channel:
        call = asyncio.ensure_future(channel.unary_unary(SLOW_SLEEP)(b"30", timeout=20))
        await asyncio.sleep(0.2)  # let the call reach the servicer
        started = time.monotonic()
        await server.stop(grace=0.3)
        assert time.monotonic() - started < 3
        with pytest.raises(grpc.aio.AioRpcError) as cancelled:
            await call
    assert cancelled.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)


async def test_stop_is_shared_by_concurrent_callers_and_repeatable():
    server = ServiceServer(TesseraSettings(), [])
    await server.start()
    await asyncio.gather(server.stop(), server.stop(grace=0))
    await server.stop()
    await server.wait_for_termination()
    async with grpc.aio.insecure_channel(server.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _health(channel)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
