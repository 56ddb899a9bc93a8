import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio

from tessera.core import TesseraSettings
from tessera.core.plugins import HealthCheck, HealthStatus
from tessera.core.server import ServiceServer
from tessera.health_checks import GrpcCheck, HttpCheck, TcpCheck
from tessera.testing.conformance.health_checks import HealthCheckConformance


async def _http_server(status_line: bytes) -> asyncio.Server:
    """A minimal HTTP/1.1 server answering every request with one status and no body."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(status_line + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


def _port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


class TestTcpCheck(HealthCheckConformance):
    entry_point = "tcp"

    def make_check(self) -> HealthCheck:
        return TcpCheck()

    def target_for(self, host: str, port: int) -> str:
        return f"{host}:{port}"

    @pytest_asyncio.fixture
    async def healthy_target(self) -> AsyncIterator[str]:
        server = await _http_server(b"HTTP/1.1 200 OK")
        yield self.target_for("127.0.0.1", _port(server))
        server.close()


class TestGrpcCheck(HealthCheckConformance):
    entry_point = "grpc"

    def make_check(self) -> HealthCheck:
        return GrpcCheck()

    def target_for(self, host: str, port: int) -> str:
        return f"{host}:{port}"

    @pytest_asyncio.fixture
    async def healthy_target(self) -> AsyncIterator[str]:
        async with ServiceServer(TesseraSettings(port=0), []) as server:
            yield self.target_for("127.0.0.1", server.port)


class TestHttpCheck(HealthCheckConformance):
    entry_point = "http"

    def make_check(self) -> HealthCheck:
        return HttpCheck()

    def target_for(self, host: str, port: int) -> str:
        return f"http://{host}:{port}/health"

    @pytest_asyncio.fixture
    async def healthy_target(self) -> AsyncIterator[str]:
        server = await _http_server(b"HTTP/1.1 204 No Content")
        yield self.target_for("127.0.0.1", _port(server))
        server.close()


async def test_grpc_check_is_critical_for_an_unknown_service_and_a_draining_server() -> None:
    async with ServiceServer(TesseraSettings(port=0), []) as server:
        target = f"127.0.0.1:{server.port}"
        unknown = await GrpcCheck().check(f"{target}/no.such.Service", 5)
        assert unknown.status is HealthStatus.CRITICAL
        assert "NOT_FOUND" in unknown.detail
        assert (
            await GrpcCheck().check(f"{target}/tessera.diagnostics.v1.Diagnostics", 5)
        ).status is (HealthStatus.PASSING)


async def test_http_check_maps_status_codes() -> None:
    for status_line, expected in (
        (b"HTTP/1.1 503 Service Unavailable", HealthStatus.CRITICAL),
        (b"HTTP/1.1 429 Too Many Requests", HealthStatus.WARNING),
        (b"HTTP/1.1 301 Moved Permanently", HealthStatus.CRITICAL),
    ):
        server = await _http_server(status_line)
        result = await HttpCheck().check(f"http://127.0.0.1:{_port(server)}/", 5)
        server.close()
        assert result.status is expected, status_line
        assert result.detail.startswith("HTTP ")
