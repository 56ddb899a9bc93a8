import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tessera.core import FailedPreconditionError, TesseraSettings
from tessera.core.server import DIAGNOSTICS_SERVICE, ServiceBinding, ServiceServer

WIDGETS = "test.v1.Widgets"


async def _count(request: bytes, context) -> bytes:
    return str(len(request)).encode()


def _widgets_binding() -> ServiceBinding:
    handler = grpc.method_handlers_generic_handler(
        WIDGETS, {"Count": grpc.unary_unary_rpc_method_handler(_count)}
    )
    return ServiceBinding(
        name=WIDGETS,
        servicer=handler,
        add_to_server=lambda servicer, server: server.add_generic_rpc_handlers((servicer,)),
    )


@pytest.fixture(scope="module")
async def server():
    async with ServiceServer(TesseraSettings(), [_widgets_binding()]) as running:
        yield running


@pytest.fixture
async def channel(server):
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield channel


@pytest.mark.parametrize("service", ["", WIDGETS, DIAGNOSTICS_SERVICE])
async def test_health_answers_serving_for_each_service_and_overall(channel, service):
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5
    )
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_health_of_an_unknown_service_is_not_found(channel):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="test.v1.Nothing"), timeout=5
        )
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_bindings_and_the_kit_services(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = set()
    async for response in responses:
        names.update(service.name for service in response.list_services_response.service)
    assert names == {
        WIDGETS,
        DIAGNOSTICS_SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }


async def test_reflection_describes_the_diagnostics_service(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=DIAGNOSTICS_SERVICE)]),
        timeout=5,
    )
    files = [response.file_descriptor_response async for response in responses]
    assert files[0].file_descriptor_proto, "reflection returned no descriptor"


async def test_a_bound_service_answers(channel):
    count = channel.unary_unary(f"/{WIDGETS}/Count")
    assert await count(b"abcd", timeout=5) == b"4"


async def test_address_and_port_before_start_raise():
    server = ServiceServer(TesseraSettings(), [])
    with pytest.raises(FailedPreconditionError):
        _ = server.port
    await server.stop()  # nothing started, nothing to stop


async def test_binding_a_service_twice_or_a_builtin_one_is_a_config_error():
    from tessera.core import ConfigError

    with pytest.raises(ConfigError, match="bound twice"):
        ServiceServer(TesseraSettings(), [_widgets_binding(), _widgets_binding()])
    with pytest.raises(ConfigError, match="built into the server kit"):
        ServiceServer(
            TesseraSettings(),
            [ServiceBinding(DIAGNOSTICS_SERVICE, object(), lambda servicer, server: None)],
        )


async def test_a_port_in_use_is_a_config_error(server):
    from tessera.core import ConfigError

    clash = ServiceServer(TesseraSettings(port=server.port), [])
    with pytest.raises(ConfigError, match="cannot listen"):
        await clash.start()
