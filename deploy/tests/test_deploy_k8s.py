import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs

from tessera.core import SERVICE_PORTS
from tessera.ratelimit import installed_limiters, parse_domain

K8S = Path(__file__).resolve().parents[1] / "k8s"
#: The Kubernetes release whose published schemas (vendored by kubernetes-validate) the
#: manifests must satisfy; gRPC probes are GA since 1.27.
KUBERNETES_VERSION = "1.31.0"
LAYERS = ["base", "overlays/production"]

_KNOWN_KEYS = {
    "apiVersion",
    "kind",
    "namespace",
    "labels",
    "resources",
    "images",
    "generatorOptions",
    "configMapGenerator",
    "replicas",
    "patches",
}
_CLUSTER_SCOPED = {"Namespace"}


def render(directory: Path) -> list[dict[str, Any]]:
    """Build a kustomization as `kubectl kustomize` does, for the fields these manifests use.

    A field this renderer does not know fails the test instead of being ignored, so the manifests
    cannot drift into features that are left unchecked.
    """
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - _KNOWN_KEYS
    assert not unknown, f"{directory}: the offline renderer does not know {sorted(unknown)}"
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objects += render(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    options = kustomization.get("generatorOptions", {})
    for generator in kustomization.get("configMapGenerator", []):
        _generate(objects, directory, generator, options)
    for patch in kustomization.get("patches", []):
        for doc in yaml.safe_load_all((directory / patch["path"]).read_text()):
            target = _find(objects, doc["kind"], doc["metadata"]["name"])
            target.update(_merge(target, doc))
    for replica in kustomization.get("replicas", []):
        _find_workload(objects, replica["name"])["spec"]["replicas"] = replica["count"]
    for image in kustomization.get("images", []):
        for container in _containers(objects):
            if container["image"].partition(":")[0] == image["name"]:
                name = image.get("newName", image["name"])
                container["image"] = f"{name}:{image['newTag']}"
    for group in kustomization.get("labels", []):
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(group["pairs"])
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in _CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    return objects


def _generate(
    objects: list[dict[str, Any]], directory: Path, generator: dict[str, Any], options: Any
) -> None:
    data = dict(line.split("=", 1) for line in generator.get("literals", []))
    for file in generator.get("files", []):
        key, _, source = file.rpartition("=")
        data[key or Path(source).name] = (directory / source).read_text()
    assert options.get("disableNameSuffixHash") or generator.get("options"), "hash suffix"
    if generator.get("behavior") == "merge":
        _find(objects, "ConfigMap", generator["name"])["data"].update(data)
    else:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"]},
                "data": data,
            }
        )


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge: maps merge, lists of named items merge by name, anything else replaces."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and all(map(_item_name, patch)):
        merged_list = list(base)
        for item in patch:
            index = next((i for i, b in enumerate(base) if _item_name(b) == _item_name(item)), None)
            if index is None:
                merged_list.append(copy.deepcopy(item))
            else:
                merged_list[index] = _merge(base[index], item)
        return merged_list
    return copy.deepcopy(patch)


def _item_name(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    return item.get("name") or item.get("metadata", {}).get("name")


def _find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} objects"
    return found[0]


def _find_workload(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [
        o
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet") and o["metadata"]["name"] == name
    ]
    return found


def _workloads(objects: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (o for o in objects if o["kind"] in ("Deployment", "StatefulSet"))


def _containers(objects: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for workload in _workloads(objects):
        yield from workload["spec"]["template"]["spec"]["containers"]


def _environment(objects: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The variables a container gets from its envFrom ConfigMaps and its literal env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(_find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        elif variable["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP":
            env[variable["name"]] = "10.0.0.1"  # a pod address, for validation
    return env


@pytest.fixture(scope="module", params=LAYERS)
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(K8S / request.param)


def test_every_object_is_valid_against_the_kubernetes_schemas(
    rendered: list[dict[str, Any]],
) -> None:
    problems = []
    for obj in rendered:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {error.message}")
    assert problems == []


def test_the_schema_check_rejects_a_misspelt_field(rendered: list[dict[str, Any]]) -> None:
    deployment = copy.deepcopy(_find(rendered, "Deployment", "registry"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_services_have_grpc_probes_on_the_port_their_settings_bind(
    rendered: list[dict[str, Any]], kit: Any
) -> None:
    for name, design in SERVICE_PORTS.items():
        deployment = _find(rendered, "Deployment", name)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        process = kit.inspect_command(container["command"])
        assert process.problems == ()
        settings, problems = kit.settings_problems(
            process.settings_class, _environment(rendered, container)
        )
        assert problems == [], name
        assert settings.port == design.port
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == settings.port, f"{name} {probe}"
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"grpc": settings.port, "metrics": settings.metrics_port}
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(settings.metrics_port)


def test_every_container_runs_a_real_command_with_real_settings(
    rendered: list[dict[str, Any]], kit: Any
) -> None:
    problems = []
    for container in _containers(rendered):
        if not container["image"].partition(":")[0].endswith("tessera"):
            continue
        process = kit.inspect_command(container["command"])
        problems += list(process.problems)
        _, found = kit.settings_problems(process.settings_class, _environment(rendered, container))
        problems += [f"{container['name']}: {p}" for p in found]
        for probe in ("readinessProbe", "livenessProbe"):
            if "exec" in container.get(probe, {}):
                problems += list(kit.inspect_command(container[probe]["exec"]["command"]).problems)
    assert problems == []


def test_every_container_has_requests_limits_and_a_probe(rendered: list[dict[str, Any]]) -> None:
    for container in _containers(rendered):
        resources = container["resources"]
        assert resources["requests"]["cpu"], container["name"]
        assert resources["requests"]["memory"], container["name"]
        assert resources["limits"]["memory"], container["name"]
        assert "livenessProbe" in container, container["name"]


def test_services_select_pods_and_target_named_ports(rendered: list[dict[str, Any]]) -> None:
    for service in (o for o in rendered if o["kind"] == "Service"):
        selector = service["spec"]["selector"]
        (workload,) = [
            w
            for w in _workloads(rendered)
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        port_names = {
            p["name"]
            for c in workload["spec"]["template"]["spec"]["containers"]
            for p in c["ports"]
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, service["metadata"]["name"]


def test_replicated_workloads_have_a_disruption_budget(rendered: list[dict[str, Any]]) -> None:
    budgets = [o for o in rendered if o["kind"] == "PodDisruptionBudget"]
    for workload in _workloads(rendered):
        name = workload["metadata"]["name"]
        if name in ("beat", "redis"):
            continue  # singletons: a budget would block every node drain
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert any(
            b["spec"]["selector"]["matchLabels"].items() <= labels.items() for b in budgets
        ), name


def test_ratelimit_scales_with_a_pod_autoscaler_and_reads_its_config_map(
    rendered: list[dict[str, Any]], kit: Any
) -> None:
    hpa = _find(rendered, "HorizontalPodAutoscaler", "ratelimit")
    target = hpa["spec"]["scaleTargetRef"]
    deployment = _find(rendered, target["kind"], target["name"])
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    assert hpa["spec"]["minReplicas"] >= 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    settings, _ = kit.settings_problems(
        kit.inspect_command(container["command"]).settings_class, _environment(rendered, container)
    )
    (mount,) = [
        m for m in container["volumeMounts"] if m["mountPath"] == str(settings.ratelimit_config_dir)
    ]
    (volume,) = [
        v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]
    ]
    config = _find(rendered, "ConfigMap", volume["configMap"]["name"])
    for file_name, text in config["data"].items():
        domain = parse_domain(text, algorithms=installed_limiters(), source=file_name)
        assert domain.domain == "edge"


def test_etcd_statefulset_names_its_members_through_the_headless_service(
    rendered: list[dict[str, Any]],
) -> None:
    etcd = _find(rendered, "StatefulSet", "etcd")
    service = _find(rendered, "Service", etcd["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    replicas = etcd["spec"]["replicas"]
    (container,) = etcd["spec"]["template"]["spec"]["containers"]
    flags = dict(arg.split("=", 1) for arg in container["command"][1:])
    members = [
        f"etcd-{i}=http://etcd-{i}.{service['metadata']['name']}:2380" for i in range(replicas)
    ]
    assert flags["--initial-cluster"] == ",".join(members)
    endpoints = _find(rendered, "ConfigMap", "tessera-env")["data"]["TESSERA_ETCD_ENDPOINTS"]
    assert endpoints.split(",") == [f"etcd-{i}.etcd:2379" for i in range(replicas)]


def test_shared_endpoints_name_services_and_their_ports(rendered: list[dict[str, Any]]) -> None:
    env = _find(rendered, "ConfigMap", "tessera-env")["data"]
    redis = urlsplit(env["TESSERA_REDIS_URL"])
    assert redis.port in _service_ports(rendered, str(redis.hostname))
    for endpoint in env["TESSERA_REGISTRY_ENDPOINTS"].split(","):
        host, _, port = endpoint.rpartition(":")
        assert int(port) in _service_ports(rendered, host), endpoint
        assert int(port) == SERVICE_PORTS["registry"].port


def _service_ports(rendered: list[dict[str, Any]], name: str) -> set[int]:
    return {port["port"] for port in _find(rendered, "Service", name)["spec"]["ports"]}


def test_production_overlay_raises_replicas_and_pins_a_release_image() -> None:
    base = render(K8S / "base")
    production = render(K8S / "overlays/production")
    for name in ("registry", "lock"):
        assert (
            _find(production, "Deployment", name)["spec"]["replicas"]
            > _find(base, "Deployment", name)["spec"]["replicas"]
        )
    images = {c["image"] for c in _containers(production) if "tessera" in c["image"]}
    assert images == {"registry.example.com/tessera:0.1.0"}
    env = _find(production, "ConfigMap", "tessera-env")["data"]
    assert env["TESSERA_TRACE_EXPORTER"] == "otlp"
    assert env["TESSERA_ETCD_ENDPOINTS"]  # merged, not replaced
    storage = _find(production, "StatefulSet", "etcd")["spec"]["volumeClaimTemplates"][0]
    assert storage["spec"]["resources"]["requests"]["storage"] == "8Gi"
