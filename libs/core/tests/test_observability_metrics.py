import asyncio
import urllib.error
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tessera.core import TesseraSettings
from tessera.core.observability import GrpcServerMetrics
from tessera.core.server import DIAGNOSTICS_SERVICE, ServiceServer
from tessera.proto.diagnostics.v1 import diagnostics_pb2, diagnostics_pb2_grpc


async def _scrape(port: int) -> dict[tuple[str, frozenset], float]:
    def fetch() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode()

    samples = {}
    for family in text_string_to_metric_families(await asyncio.to_thread(fetch)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _labels(method: str, **more: str) -> frozenset:
    return frozenset({"service": DIAGNOSTICS_SERVICE, "method": method, **more}.items())


async def _exercise(address: str, *, echoes: int) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = diagnostics_pb2_grpc.DiagnosticsStub(channel)
        for _ in range(echoes):
            await stub.Echo(diagnostics_pb2.EchoRequest(payload=b"m"), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Echo(diagnostics_pb2.EchoRequest(payload=b"x" * (1 << 20 | 1)), timeout=5)
        call = stub.EchoStream(diagnostics_pb2.EchoStreamRequest(payload=b"s", count=4), timeout=5)
        assert len([message async for message in call]) == 4


async def test_metrics_endpoint_shows_counters_after_calls():
    async with ServiceServer(TesseraSettings(metrics_port=0), []) as server:
        assert server.metrics_port not in (None, 0, server.port)
        await _exercise(server.address, echoes=3)
        samples = await _scrape(server.metrics_port)
    assert samples[("tessera_grpc_server_requests_total", _labels("Echo"))] == 4
    assert samples[("tessera_grpc_server_requests_total", _labels("EchoStream"))] == 1
    errors = _labels("Echo", code="INVALID_ARGUMENT")
    assert samples[("tessera_grpc_server_errors_total", errors)] == 1
    assert ("tessera_grpc_server_errors_total", _labels("EchoStream", code="OK")) not in samples
    assert samples[("tessera_grpc_server_request_duration_seconds_count", _labels("Echo"))] == 4
    assert (
        samples[("tessera_grpc_server_request_duration_seconds_count", _labels("EchoStream"))] == 1
    )
    assert samples[("tessera_grpc_server_in_flight", _labels("Echo"))] == 0
    assert samples[("process_cpu_seconds_total", frozenset())] > 0


async def test_two_servers_in_one_process_keep_separate_counts():
    async with (
        ServiceServer(TesseraSettings(metrics_port=0), []) as busy,
        ServiceServer(TesseraSettings(metrics_port=0), []) as idle,
    ):
        await _exercise(busy.address, echoes=2)
        busy_samples = await _scrape(busy.metrics_port)
        idle_samples = await _scrape(idle.metrics_port)
    assert busy_samples[("tessera_grpc_server_requests_total", _labels("Echo"))] == 3
    assert ("tessera_grpc_server_requests_total", _labels("Echo")) not in idle_samples


async def test_no_metrics_server_unless_a_port_is_set():
    async with ServiceServer(TesseraSettings(), []) as server:
        assert server.metrics_port is None


async def test_stopping_the_server_closes_the_metrics_endpoint():
    server = ServiceServer(TesseraSettings(metrics_port=0), [])
    await server.start()
    port = server.metrics_port
    await _scrape(port)
    await server.stop()
    with pytest.raises(urllib.error.URLError):
        await _scrape(port)


def test_in_flight_gauge_follows_started_and_finished_calls():
    metrics = GrpcServerMetrics()
    metrics.call_started("svc", "M")
    metrics.call_started("svc", "M")
    metrics.call_finished("svc", "M", grpc.StatusCode.OK, 0.002)
    registry = metrics.registry
    labels = {"service": "svc", "method": "M"}
    assert registry.get_sample_value("tessera_grpc_server_in_flight", labels) == 1
    metrics.call_finished("svc", "M", grpc.StatusCode.CANCELLED, 0.5)
    assert registry.get_sample_value("tessera_grpc_server_in_flight", labels) == 0
    assert (
        registry.get_sample_value(
            "tessera_grpc_server_errors_total", {**labels, "code": "CANCELLED"}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "tessera_grpc_server_request_duration_seconds_bucket", {**labels, "le": "0.0025"}
        )
        == 1
    )


def test_errors_are_counted_per_method_and_code():
    metrics = GrpcServerMetrics()
    finished = [
        ("A", grpc.StatusCode.INVALID_ARGUMENT),
        ("A", grpc.StatusCode.INVALID_ARGUMENT),
        ("A", grpc.StatusCode.NOT_FOUND),
        ("B", grpc.StatusCode.INVALID_ARGUMENT),
        ("B", grpc.StatusCode.OK),
    ]
    for method, code in finished:
        metrics.call_started("svc", method)
        metrics.call_finished("svc", method, code, 0.001)

    def value(name: str, method: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(
            name, {"service": "svc", "method": method, **labels}
        )

    errors = "tessera_grpc_server_errors_total"
    assert value(errors, "A", code="INVALID_ARGUMENT") == 2
    assert value(errors, "A", code="NOT_FOUND") == 1
    assert value(errors, "B", code="INVALID_ARGUMENT") == 1
    assert value(errors, "B", code="OK") is None
    assert value("tessera_grpc_server_requests_total", "A") == 3
    assert value("tessera_grpc_server_requests_total", "B") == 2
    assert value("tessera_grpc_server_request_duration_seconds_count", "B") == 2
