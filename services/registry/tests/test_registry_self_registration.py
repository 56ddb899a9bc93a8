"""Services register themselves when `registry_endpoints` is set; ListServices shows them."""

import asyncio

import pytest

from tessera.client.registry import SELF_NAMESPACE, RegistryClient, self_registration
from tessera.core import TesseraSettings, ValidationError
from tessera.proto.registry.v1 import registry_pb2

from .conftest import Replica, StartReplica, instance

# Registered, never dialled: any fixed port will do.
_PORT = 6553


async def _services(client: RegistryClient, namespace: str) -> dict[str, tuple[int, int]]:
    listed = await client.list_services(namespace)
    return {s.service: (s.instances, s.eligible) for s in listed.services}


async def test_registry_self_registration_registers_keeps_alive_and_deregisters(
    start_replica: StartReplica,
) -> None:
    settings = TesseraSettings(service_name="tessera-selftest", port=_PORT)
    async with start_replica(heartbeat_interval_s=0.1, unhealthy_after_s=0.5) as replica:
        # Started before the registry is reachable: it keeps trying, then registers.
        late = settings.model_copy(update={"registry_endpoints": ["127.0.0.1:1", replica.address]})
        async with (
            RegistryClient([replica.address]) as client,
            self_registration(late) as registration,
        ):
            assert registration is not None
            async with asyncio.timeout(10):
                # Polling the registry is what is under test; there is no event to wait on.
                while "tessera-selftest" not in await _services(client, SELF_NAMESPACE):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            [stored] = (await client.list(SELF_NAMESPACE, "tessera-selftest")).service.instances
            assert (stored.id, stored.port, stored.ephemeral) == (
                f"127.0.0.1:{_PORT}",
                _PORT,
                True,
            )
            await asyncio.sleep(1.0)  # twice the unhealthy timer: the keep-alive holds it
            assert (await _services(client, SELF_NAMESPACE))["tessera-selftest"] == (1, 1)
        async with RegistryClient([replica.address]) as client:
            assert "tessera-selftest" not in await _services(client, SELF_NAMESPACE)


async def test_registry_self_registration_is_off_without_endpoints_or_port() -> None:
    async with self_registration(TesseraSettings(port=5000)) as off:
        assert off is None
    unbound = TesseraSettings(port=0, registry_endpoints=["127.0.0.1:1"])
    async with self_registration(unbound) as off:
        assert off is None


def test_registry_endpoints_setting_splits_the_environment_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TESSERA_REGISTRY_ENDPOINTS", "10.0.0.1:50051, 10.0.0.2:50051")
    assert TesseraSettings.from_env().registry_endpoints == ["10.0.0.1:50051", "10.0.0.2:50051"]


async def test_registry_list_services_summarizes_a_namespace_and_checks_it(
    replica: Replica, client: RegistryClient, namespace: str
) -> None:
    await client.register(instance(namespace, "api", id="a"))
    await client.register(instance(namespace, "api", id="b"))
    await client.register(instance(namespace, "db", id="c"))
    await client.set_status(namespace, "api", "b", registry_pb2.SERVING_STATUS_DRAINING)
    assert await _services(client, namespace) == {"api": (2, 1), "db": (1, 1)}
    everything = await client.list_services()
    assert {(s.namespace, s.service) for s in everything.services} >= {
        (namespace, "api"),
        (namespace, "db"),
    }
    with pytest.raises(ValidationError) as raised:
        await client.list_services("Bad Namespace")
    assert "namespace" in raised.value.message
