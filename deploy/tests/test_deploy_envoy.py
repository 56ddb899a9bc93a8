import copy
import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from google.protobuf import json_format

from tessera.ratelimit import installed_limiters, load_directory

DEPLOY = Path(__file__).resolve().parents[1]


def _type_urls(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "@type":
                yield value
            else:
                yield from _type_urls(value)
    elif isinstance(node, list):
        for value in node:
            yield from _type_urls(value)


def _register_any_types(config: dict[str, Any]) -> None:
    """Import the xds-protos modules of every `typed_config` type so json_format can resolve it.

    The type `envoy.extensions.filters.http.ratelimit.v3.RateLimit` lives in one of the modules of
    the Python package `envoy.extensions.filters.http.ratelimit.v3`; importing them all registers
    its descriptor in the default pool.
    """
    for url in set(_type_urls(config)):
        package = url.rpartition("/")[2].rpartition(".")[0]
        module = importlib.import_module(package)
        for info in pkgutil.iter_modules(module.__path__):
            importlib.import_module(f"{package}.{info.name}")


def _parse(config: dict[str, Any]) -> bootstrap_pb2.Bootstrap:
    _register_any_types(config)
    return json_format.ParseDict(config, bootstrap_pb2.Bootstrap())


def _clusters(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in config["static_resources"]["clusters"]}


def _connection_manager(config: dict[str, Any]) -> dict[str, Any]:
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (manager,) = chain["filters"]
    typed: dict[str, Any] = manager["typed_config"]
    return typed


def _rate_limit_filter(config: dict[str, Any]) -> dict[str, Any]:
    filters = {f["name"]: f["typed_config"] for f in _connection_manager(config)["http_filters"]}
    return filters["envoy.filters.http.ratelimit"]


def test_envoy_config_is_a_valid_bootstrap_message(envoy_config: dict[str, Any]) -> None:
    bootstrap = _parse(envoy_config)

    assert {c.name for c in bootstrap.static_resources.clusters} == set(_clusters(envoy_config))
    # Every typed_config resolved to a real message, not left as an opaque Any.
    assert len(set(_type_urls(envoy_config))) >= 5


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (["admin", "address", "socket_address", "port_valu"], 9901),
        (["static_resources", "clusters", 0, "type"], "STRICT_DNZ"),
    ],
    ids=["unknown_field", "unknown_enum_value"],
)
def test_envoy_schema_check_rejects_a_broken_config(
    envoy_config: dict[str, Any], path: list[Any], bad: Any
) -> None:
    broken = copy.deepcopy(envoy_config)
    node = broken
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = bad

    with pytest.raises(json_format.ParseError):
        _parse(broken)


def test_envoy_clusters_point_at_services_and_ports_of_the_stack(
    envoy_config: dict[str, Any], compose: dict[str, Any], kit: Any
) -> None:
    services = compose["services"]
    for cluster in _clusters(envoy_config).values():
        for group in cluster["load_assignment"]["endpoints"]:
            for endpoint in group["lb_endpoints"]:
                address = endpoint["endpoint"]["address"]["socket_address"]
                host, port = address["address"], address["port_value"]
                assert host in services, f"{cluster['name']}: no service {host}"
                service = services[host]
                command = service.get("command", [])
                if command[:1] == ["python"]:
                    assert str(port) in command, f"demo does not listen on {port}"
                elif command[:1] and command[0].startswith("tessera-"):
                    process = kit.inspect_command(command)
                    settings, problems = kit.settings_problems(
                        process.settings_class, service["environment"]
                    )
                    assert problems == []
                    assert settings.port == port, f"{host} listens on {settings.port}"
                else:
                    assert (host, port) == ("jaeger", 4317)


def test_rate_limit_filter_calls_the_ratelimit_service_over_http2(
    envoy_config: dict[str, Any], compose: dict[str, Any]
) -> None:
    rate_limit = _rate_limit_filter(envoy_config)
    cluster = _clusters(envoy_config)[
        rate_limit["rate_limit_service"]["grpc_service"]["envoy_grpc"]["cluster_name"]
    ]
    assert rate_limit["rate_limit_service"]["transport_api_version"] == "V3"
    options = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert "http2_protocol_options" in options["explicit_http_config"]
    hosts = {
        e["endpoint"]["address"]["socket_address"]["address"]
        for group in cluster["load_assignment"]["endpoints"]
        for e in group["lb_endpoints"]
    }
    replicas = {
        n for n, s in compose["services"].items() if s.get("command") == ["tessera-ratelimit"]
    }
    assert hosts == replicas
    assert "grpc_health_check" in cluster["health_checks"][0]


def test_rate_limit_domain_and_descriptors_exist_in_the_ratelimit_config(
    envoy_config: dict[str, Any],
) -> None:
    domains = load_directory(DEPLOY / "k8s" / "base" / "ratelimit", algorithms=installed_limiters())
    domain = domains[_rate_limit_filter(envoy_config)["domain"]]
    configured = {(child.key, child.value) for child in domain.root.children.values()}
    (host,) = _connection_manager(envoy_config)["route_config"]["virtual_hosts"]
    for rule in host["rate_limits"]:
        for action in rule["actions"]:
            if "generic_key" in action:
                entry = ("generic_key", action["generic_key"]["descriptor_value"])
            elif "remote_address" in action:
                entry = ("remote_address", "")
            else:
                pytest.fail(f"no check for action {action}")
            assert entry in configured, f"{entry} has no rule in domain {domain.domain}"


def test_envoy_loads_the_mounted_config(compose: dict[str, Any]) -> None:
    envoy = compose["services"]["envoy"]
    command = envoy["command"]
    config_path = command[command.index("--config-path") + 1]
    assert f"./envoy.yaml:{config_path}:ro" in envoy["volumes"]
    listener_port = 10000
    assert any(p.endswith(f":{listener_port}") for p in envoy["ports"])
