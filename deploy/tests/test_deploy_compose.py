import copy
import importlib.resources
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema

from tessera.core import GRPC_TRANSPORT_ENVIRONMENT, SERVICE_PORTS, TesseraSettings
from tessera.ratelimit import installed_limiters, load_directory

DEPLOY = Path(__file__).resolve().parents[1]
TESSERA_IMAGE = re.compile(r"^tessera:")


def _compose_schema() -> dict[str, Any]:
    # The compose-spec schema as check-jsonschema vendors it (its LICENSE.compose-spec beside it).
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads((vendor / "compose-spec.json").read_text("utf-8"))
    return schema


def _schema_errors(document: Any) -> list[str]:
    schema = _compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def _tessera_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if TESSERA_IMAGE.match(service.get("image", ""))
    }


def _settings_of(kit: Any, service: dict[str, Any]) -> TesseraSettings:
    process = kit.inspect_command(service["command"])
    settings, problems = kit.settings_problems(
        process.settings_class, service.get("environment", {})
    )
    assert settings is not None, problems
    return settings


def _host_port(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host, int(port)


def test_compose_file_is_valid_against_the_compose_spec(compose: dict[str, Any]) -> None:
    assert _schema_errors(compose) == []


def test_compose_schema_check_rejects_a_misspelt_key(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["redis"]["healthchek"] = broken["services"]["redis"].pop("healthcheck")
    broken["services"]["registry-1"]["depends_on"]["etcd-0"]["condition"] = "service_ready"

    errors = _schema_errors(broken)

    assert any("healthchek" in error for error in errors), errors
    assert any("service_ready" in error for error in errors), errors


def test_every_tessera_container_and_health_check_runs_a_real_command(
    compose: dict[str, Any], kit: Any
) -> None:
    services = _tessera_services(compose)
    assert {"worker", "beat", "demo"} <= set(services)
    problems = []
    for name, service in services.items():
        problems += [f"{name}: {p}" for p in kit.inspect_command(service["command"]).problems]
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD", f"{name}: exec-form health check expected"
        problems += [f"{name} health: {p}" for p in kit.inspect_command(test[1:]).problems]
    assert problems == []


def test_every_service_of_the_installed_distributions_runs_in_the_stack(
    compose: dict[str, Any],
) -> None:
    from tessera.client.devstack import discover_services

    commands = {tuple(s["command"][:1]) for s in _tessera_services(compose).values()}
    for name in discover_services():
        assert (f"tessera-{name}",) in commands, f"service {name} is not in the compose stack"


def test_every_tessera_variable_is_a_valid_setting_of_its_process(
    compose: dict[str, Any], kit: Any
) -> None:
    problems = []
    for name, service in _tessera_services(compose).items():
        process = kit.inspect_command(service["command"])
        _, found = kit.settings_problems(process.settings_class, service.get("environment", {}))
        problems += [f"{name}: {problem}" for problem in found]
    assert problems == []


def test_a_misspelt_variable_is_reported(kit: Any) -> None:
    process = kit.inspect_command(["tessera-ratelimit"])

    _, problems = kit.settings_problems(
        process.settings_class, {"TESSERA_RATELIMIT_CONFIG_DIRECTORY": "/etc"}
    )

    assert problems == ["TESSERA_RATELIMIT_CONFIG_DIRECTORY is not a field of RateLimitSettings"]


def test_services_listen_on_their_design_ports_on_their_own_hostname(
    compose: dict[str, Any], kit: Any
) -> None:
    for name, service in _tessera_services(compose).items():
        command = service["command"][0]
        if not command.startswith("tessera-") or command in ("tessera-worker", "tessera-beat"):
            continue
        settings = _settings_of(kit, service)
        design = SERVICE_PORTS[command.removeprefix("tessera-")]
        assert (settings.port, settings.metrics_port) == (design.port, design.metrics_port), name
        # The address it binds is the one it registers and Prometheus and Envoy reach.
        assert settings.host == service["hostname"] == name


def test_endpoints_in_settings_name_services_of_the_stack(
    compose: dict[str, Any], kit: Any
) -> None:
    services = compose["services"]
    etcd_client_ports = {
        name: urlsplit(_flag(service["command"], "--listen-client-urls")).port
        for name, service in services.items()
        if service.get("command", [""])[0] == "etcd"
    }
    registry_ports = {
        name: _settings_of(kit, service).port
        for name, service in _tessera_services(compose).items()
        if service["command"] == ["tessera-registry"]
    }
    assert len(etcd_client_ports) == 3
    assert len(registry_ports) == 2
    for name, service in _tessera_services(compose).items():
        if service["command"][0] == "python":
            continue  # the demo HTTP service is no Tessera process
        settings = _settings_of(kit, service)
        etcd = dict(_host_port(endpoint) for endpoint in settings.etcd_endpoints)
        assert etcd == etcd_client_ports, name
        registry = dict(_host_port(endpoint) for endpoint in settings.registry_endpoints)
        assert registry == registry_ports, name
        redis = urlsplit(settings.redis_url)
        assert redis.hostname in services, name
        assert redis.port == 6379
        assert services["redis"]["command"][0] == "redis-server"
        assert "--port" not in services["redis"]["command"]  # so it listens on 6379
        otlp = urlsplit(settings.otlp_endpoint)
        assert (otlp.hostname, otlp.port) == ("jaeger", 4317), name
        assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"


def _flag(command: list[str], name: str) -> str:
    values = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"{name}=")]
    assert len(values) == 1, f"{name} in {command}"
    return values[0]


def test_etcd_members_form_one_three_member_cluster_on_named_volumes(
    compose: dict[str, Any],
) -> None:
    members = {
        name: service
        for name, service in compose["services"].items()
        if service.get("command", [""])[0] == "etcd"
    }
    expected_cluster = ",".join(f"{name}=http://{name}:2380" for name in sorted(members))
    for name, service in members.items():
        command = service["command"]
        assert _flag(command, "--name") == name
        assert _flag(command, "--initial-cluster") == expected_cluster
        assert _flag(command, "--advertise-client-urls") == f"http://{name}:2379"
        assert _flag(command, "--initial-advertise-peer-urls") == f"http://{name}:2380"
        assert urlsplit(_flag(command, "--listen-peer-urls")).port == 2380
        data_dir = _flag(command, "--data-dir")
        (volume,) = service["volumes"]
        source, target = volume.split(":")
        assert target == data_dir
        assert source in compose["volumes"], f"{name} keeps its data on a named volume"
    assert len({_flag(s["command"], "--initial-cluster-token") for s in members.values()}) == 1


def test_every_container_has_a_health_check_and_starts_after_what_it_needs(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if rule["condition"] == "service_healthy":
                assert services[dependency].get("healthcheck"), dependency
    for name, service in _tessera_services(compose).items():
        if name == "demo":
            continue
        waits_for = {
            d for d, r in service["depends_on"].items() if r["condition"].endswith("healthy")
        }
        assert "redis" in waits_for, name
        if service["command"][0] not in ("tessera-beat",):
            assert {"etcd-0", "etcd-1", "etcd-2"} <= waits_for, name
    _assert_acyclic({n: set(s.get("depends_on", {})) for n, s in services.items()})


def _assert_acyclic(graph: dict[str, set[str]]) -> None:
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"depends_on cycle: {' -> '.join((*path, node))}"
        if node in done:
            return
        for dependency in graph[node]:
            visit(dependency, (*path, node))
        done.add(node)

    for node in graph:
        visit(node, ())


def test_volumes_are_declared_and_bind_mounts_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name} mounts undeclared {source}"


def test_prometheus_scrapes_every_metrics_port_and_nothing_else(
    compose: dict[str, Any], kit: Any
) -> None:
    config = kit.load_yaml(DEPLOY / "prometheus.yml")
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    expected = {"localhost:9090", "envoy:9901"}
    for name, service in compose["services"].items():
        if service.get("command", [""])[0] == "etcd":
            expected.add(
                f"{name}:{urlsplit(_flag(service['command'], '--listen-client-urls')).port}"
            )
    for name, service in _tessera_services(compose).items():
        metrics_port = _settings_of(kit, service).metrics_port
        if metrics_port is not None:
            expected.add(f"{name}:{metrics_port}")
    assert targets == expected
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts


def test_the_mounted_rate_limit_configuration_loads(compose: dict[str, Any], kit: Any) -> None:
    for name, service in _tessera_services(compose).items():
        if service["command"] != ["tessera-ratelimit"]:
            continue
        config_dir = _settings_of(kit, service).ratelimit_config_dir  # type: ignore[attr-defined]
        (mount,) = [v for v in service["volumes"] if v.split(":")[1] == str(config_dir)]
        domains = load_directory(DEPLOY / mount.split(":")[0], algorithms=installed_limiters())
        assert "edge" in domains, name


def test_beat_keeps_its_schedule_on_a_volume(compose: dict[str, Any]) -> None:
    beat = compose["services"]["beat"]
    data_dir = beat["command"][beat["command"].index("--data-dir") + 1]
    assert any(v.endswith(f":{data_dir}") for v in beat["volumes"])


def test_every_image_is_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        assert ":" in image, f"{name}: {image} has no tag"
        assert not image.endswith(":latest"), f"{name}: {image}"


def test_dockerfile_builds_every_service_and_plugin_and_runs_as_non_root(kit: Any) -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    instructions = _instructions(text)
    froms = [args for op, args in instructions if op == "FROM"]
    assert len(froms) == 2
    assert all("slim" in f for f in froms)
    user = [args for op, args in instructions if op == "USER"][-1]
    assert not user.startswith(("0", "root"))
    assert ("STOPSIGNAL", "SIGTERM") in instructions
    (health,) = [args for op, args in instructions if op == "HEALTHCHECK"]
    health_command = json.loads(health.split(" CMD ", 1)[1])
    assert kit.inspect_command(health_command).problems == ()
    (cmd,) = [args for op, args in instructions if op == "CMD"]
    assert kit.inspect_command(json.loads(cmd)).problems == ()
    # Every distribution that runs in production is installed; tests and benches are not.
    for folder in ("services", "plugins"):
        for package in sorted((DEPLOY.parent / folder).iterdir()):
            if (package / "pyproject.toml").exists() and package.name != "example":
                assert f"{folder}/{package.name}" in text, f"{folder}/{package.name} not installed"
    assert "libs/testing" not in text
    # The image's uv is the one the repository bootstraps.
    pins = (DEPLOY.parent / "tools" / "bootstrap-requirements.txt").read_text()
    uv_pin = re.search(r"^uv==\S+", pins, re.MULTILINE)
    assert uv_pin is not None
    assert uv_pin.group(0) in text
    for op, args in instructions:
        if op == "ENV":
            for name in re.findall(r"(TESSERA_\w+)=", args):
                assert name[len("TESSERA_") :].lower() in TesseraSettings.model_fields, name
        if op == "COPY" and "--from" not in args:
            for source in args.split()[:-1]:
                assert (DEPLOY.parent / source).exists(), source


def test_the_image_sets_the_grpc_transport_of_every_tessera_launcher() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    variables = " ".join(args for op, args in _instructions(text) if op == "ENV")
    for name, value in GRPC_TRANSPORT_ENVIRONMENT.items():
        assert f"{name}={value}" in variables.split(), name


def _instructions(text: str) -> list[tuple[str, str]]:
    # Join continuation lines and drop comment lines, as the Dockerfile parser does.
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    instructions = []
    for line in logical:
        op, _, args = line.partition(" ")
        instructions.append((op.upper(), " ".join(args.split())))
    return instructions


def test_dockerignore_keeps_the_lock_and_sources_in_the_context() -> None:
    lines = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert lines[lines.index("**") :][:1] == ["**"]
    for kept in ("!pyproject.toml", "!uv.lock", "!libs/**", "!services/**", "!plugins/**"):
        assert kept in lines
