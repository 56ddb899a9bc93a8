import pytest

from tessera.client.devstack import StackPorts
from tessera.core import SERVICE_PORTS, TesseraSettings, ValidationError


def _settings() -> TesseraSettings:
    return TesseraSettings(etcd_endpoints=["127.0.0.1:2379"], redis_url="redis://127.0.0.1:6379/0")


def test_design_ports_without_offset() -> None:
    ports = StackPorts.plan(["registry", "lock"], settings=_settings())

    assert (ports.etcd, ports.etcd_peer, ports.redis) == (2379, 2380, 6379)
    assert ports.services == {"registry": SERVICE_PORTS["registry"], "lock": SERVICE_PORTS["lock"]}


def test_offset_shifts_every_design_port() -> None:
    ports = StackPorts.plan(["governance"], offset=1000, settings=_settings())

    assert (ports.etcd, ports.etcd_peer, ports.redis) == (3379, 3380, 7379)
    assert ports.services["governance"].port == 51054
    assert ports.services["governance"].metrics_port == 10104


def test_explicit_etcd_and_redis_ports_are_not_shifted() -> None:
    ports = StackPorts.plan([], offset=1000, etcd=4001, redis=4002, settings=_settings())

    assert (ports.etcd, ports.redis) == (4001, 4002)
    assert ports.etcd_peer is None  # the server picks a free one


def test_service_without_design_ports_gets_distinct_free_ports() -> None:
    ports = StackPorts.plan(["thirdparty"], settings=_settings())

    chosen = ports.services["thirdparty"]
    assert chosen.port != chosen.metrics_port
    assert chosen.port > 0
    assert chosen.metrics_port > 0


def test_defaults_follow_the_settings() -> None:
    settings = TesseraSettings(
        etcd_endpoints=["10.0.0.1:12379"], redis_url="redis://10.0.0.1:16379/2"
    )

    ports = StackPorts.plan([], settings=settings)

    assert (ports.etcd, ports.redis) == (12379, 16379)


def test_offset_past_the_last_port_names_the_option() -> None:
    with pytest.raises(ValidationError) as caught:
        StackPorts.plan(["registry"], offset=20000, settings=_settings())

    assert [v.field for v in caught.value.violations] == ["port_offset"]
    assert "70051" in caught.value.message
