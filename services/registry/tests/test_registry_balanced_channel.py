import grpc
import pytest

from tessera.client.registry import BalancedChannel, RegistryClient, ServiceWatch
from tessera.core import TesseraSettings, UnavailableError
from tessera.core.server import ServiceServer
from tessera.proto.diagnostics.v1 import diagnostics_pb2, diagnostics_pb2_grpc

from .conftest import instance


async def _echo(channel: BalancedChannel) -> str:
    async with channel.call() as routed:
        stub = diagnostics_pb2_grpc.DiagnosticsStub(routed.channel)
        await stub.Echo(diagnostics_pb2.EchoRequest(payload=b"x"), timeout=5)
        return routed.endpoint.id


async def test_registry_balanced_channel_prefers_its_zone_and_ejects_a_dead_endpoint(
    client: RegistryClient, namespace: str
) -> None:
    servers = [ServiceServer(TesseraSettings(port=0), []) for _ in range(3)]
    for server in servers:
        await server.start()
    try:
        for name, server, zone in zip(("a1", "a2", "b1"), servers, "aab", strict=True):
            await client.register(
                instance(namespace, "echo", id=name, host="127.0.0.1", port=server.port, zone=zone)
            )
        async with ServiceWatch(client, namespace, "echo") as watch:
            balanced = BalancedChannel(
                watch, zone="a", max_failures=2, ejection_s=60, max_ejected_share=0.5
            )
            served = [await _echo(balanced) for _ in range(6)]
            assert sorted(served) == ["a1", "a1", "a1", "a2", "a2", "a2"]

            await servers[0].stop(0)  # a1 dies without deregistering
            failed: list[grpc.StatusCode] = []
            for _ in range(6):
                try:
                    served.append(await _echo(balanced))
                except grpc.aio.AioRpcError as error:
                    failed.append(error.code())
            # Ejected after two failures in a row.
            assert failed == [grpc.StatusCode.UNAVAILABLE] * 2
            assert balanced.ejected == {"a1"}
            assert [await _echo(balanced) for _ in range(4)] == ["a2"] * 4
            await balanced.close()
    finally:
        for server in servers:
            await server.stop(0)


async def test_registry_balanced_channel_without_eligible_instance_is_unavailable(
    client: RegistryClient, namespace: str
) -> None:
    async with ServiceWatch(client, namespace, "nothing") as watch:
        balanced = BalancedChannel(watch)
        with pytest.raises(UnavailableError):
            async with balanced.call():
                pass
