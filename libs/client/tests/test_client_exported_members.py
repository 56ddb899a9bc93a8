import tessera.client
import tessera.client.cli
import tessera.client.devstack


def test_client_exports() -> None:
    assert tessera.client.__all__ == ["__version__"]


def test_cli_exports() -> None:
    assert tessera.client.cli.__all__ == ["app", "main"]


def test_devstack_exports_are_pinned_and_sorted() -> None:
    assert tessera.client.devstack.__all__ == [
        "CLUSTER_ETCD_MEMBERS",
        "CLUSTER_REPLICAS",
        "MANIFEST_NAME",
        "SERVICES_GROUP",
        "Component",
        "ComponentKind",
        "ComponentStatus",
        "DevStack",
        "DevStackConfig",
        "Health",
        "ProbeResult",
        "ServiceInstance",
        "StackManifest",
        "StackManifestError",
        "StackPorts",
        "StackRunningError",
        "check_components",
        "default_components",
        "discover_services",
        "probe_component",
    ]
    for name in tessera.client.devstack.__all__:
        assert hasattr(tessera.client.devstack, name)
