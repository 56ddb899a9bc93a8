import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog.testing

from tessera.core import ConfigError, PluginError
from tessera.core.plugins import (
    BALANCERS,
    FAMILIES,
    Balancer,
    Endpoint,
    load_all,
    load_plugins,
)

SUPPORT = Path(__file__).parent / "plugins_support"
DEMO_ENTRY_POINTS = """\
[tessera.balancers]
first = tessera_demo_good:FirstBalancer
broken = tessera_demo_broken:Balancer
choose = tessera_demo_invalid:ChooseBalancer
async_pick = tessera_demo_invalid:AsyncPickBalancer
not_callable = tessera_demo_invalid:NOT_CALLABLE
wrong_product = tessera_demo_good:make_not_a_balancer

[tessera.health_checks]
first = tessera_demo_good:FirstBalancer
"""


def _install(site: Path, name: str, entry_points: str) -> None:
    dist_info = site / f"{name}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(entry_points)


@pytest.fixture
def demo_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Install the demo distribution (metadata in tmp_path, modules in plugins_support)."""
    _install(tmp_path, "tessera_demo_plugins", DEMO_ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(SUPPORT))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for module in [m for m in sys.modules if m.startswith("tessera_demo_")]:
        del sys.modules[module]
    importlib.invalidate_caches()


@pytest.mark.usefixtures("demo_plugins")
def test_plugins_good_one_loads_and_the_others_are_reported() -> None:
    with structlog.testing.capture_logs() as logs:
        balancers = load_plugins(BALANCERS)

    first = balancers.loaded["first"]
    assert first.value == "tessera_demo_good:FirstBalancer"
    assert (first.distribution, first.version) == ("tessera_demo_plugins", "1.0")
    balancer = first.create()
    assert isinstance(balancer, Balancer)
    endpoints = [Endpoint("a", "127.0.0.1:1"), Endpoint("b", "127.0.0.1:2")]
    assert balancer.pick(endpoints, None) == endpoints[0]

    for name in ("broken", "choose", "async_pick", "not_callable"):
        assert name not in balancers.loaded
        error = balancers.failures[name]
        assert isinstance(error, PluginError)
        assert (error.plugin, error.group) == (name, "tessera.balancers")
        assert name in error.message
    broken = balancers.failures["broken"]
    assert "tessera_demo_broken:Balancer" in broken.message
    assert isinstance(broken.__cause__, ModuleNotFoundError)
    assert "tessera_demo_dependency_that_is_not_installed" in broken.message
    assert "missing method pick()" in balancers.failures["choose"].message
    assert "pick() must be synchronous" in balancers.failures["async_pick"].message
    assert "neither a class nor a callable" in balancers.failures["not_callable"].message

    failed = {line["plugin"]: line for line in logs if line["event"] == "plugin_load_failed"}
    assert set(failed) >= {"broken", "choose", "async_pick", "not_callable"}
    assert failed["broken"]["log_level"] == "warning"
    assert failed["broken"]["value"] == "tessera_demo_broken:Balancer"
    assert failed["broken"]["group"] == "tessera.balancers"


@pytest.mark.usefixtures("demo_plugins")
def test_plugins_callable_factory_is_checked_when_it_creates() -> None:
    plugin = load_plugins("tessera.balancers").get("wrong_product")
    with pytest.raises(PluginError, match="'not a balancer', which has missing method pick"):
        plugin.create()


@pytest.mark.usefixtures("demo_plugins")
def test_plugins_factory_that_raises_becomes_a_plugin_error() -> None:
    plugin = load_plugins(BALANCERS).get("first")
    with pytest.raises(PluginError, match="factory raised TypeError") as caught:
        plugin.create("an argument FirstBalancer does not take")
    assert isinstance(caught.value.__cause__, TypeError)
    assert caught.value.plugin == "first"


@pytest.mark.usefixtures("demo_plugins")
def test_plugins_get_raises_the_recorded_failure_or_names_what_is_installed() -> None:
    balancers = load_plugins(BALANCERS)
    with pytest.raises(PluginError) as caught:
        balancers.get("broken")
    assert caught.value is balancers.failures["broken"]
    with pytest.raises(PluginError, match=r"no plugin 'absent' in tessera.balancers .*first"):
        balancers.get("absent")


@pytest.mark.usefixtures("demo_plugins")
def test_plugins_each_family_checks_its_own_protocol() -> None:
    everything = load_all()
    assert set(everything) == set(FAMILIES)
    checks = everything["tessera.health_checks"]
    assert "first" not in checks.loaded
    assert "missing method check()" in checks.failures["first"].message
    assert "first" in everything["tessera.balancers"].loaded


def test_plugins_same_name_from_two_distributions_keeps_the_first(demo_plugins: Path) -> None:
    again = "[tessera.balancers]\nfirst = tessera_demo_good:FirstBalancer\n"
    _install(demo_plugins, "tessera_demo_again", again)
    importlib.invalidate_caches()
    balancers = load_plugins(BALANCERS)
    assert "first" in balancers.loaded
    duplicates = [name for name in balancers.failures if name.startswith("first (")]
    assert len(duplicates) == 1
    assert "registered twice" in balancers.failures[duplicates[0]].message


def test_plugins_unknown_group_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"'tessera\.nope' is not a plugin group"):
        load_plugins("tessera.nope")


def test_plugins_families_document_their_contract() -> None:
    for group, family in FAMILIES.items():
        assert family.group == group
        assert group.startswith("tessera.")
        assert family.description
        assert "Factory:" in (family.protocol.__doc__ or "")
        assert "Concurrency:" in (family.protocol.__doc__ or "")


def test_plugins_protocol_check_accepts_a_conforming_class_and_reports_mismatches() -> None:
    class Conforming:
        def pick(self, instances: object, key: object) -> object:
            return instances

    class AsyncPick:
        async def pick(self, instances: object, key: object) -> object:
            return instances

    assert BALANCERS.violations(Conforming) == []
    assert BALANCERS.violations(Conforming()) == []
    assert BALANCERS.violations(AsyncPick) == ["pick() must be synchronous"]
    assert BALANCERS.violations(object()) == ["missing method pick()"]


def test_plugins_endpoint_is_hashable_for_balancer_caches() -> None:
    endpoints = (Endpoint("a", "h:1", weight=2.0, zone="z1"), Endpoint("b", "h:2"))
    assert {endpoints: 1}[tuple(endpoints)] == 1


def test_plugins_public_api_is_pinned() -> None:
    import tessera.core.plugins as package

    assert package.__all__ == [
        "BALANCERS",
        "FAMILIES",
        "HEALTH_CHECKS",
        "LIMITERS",
        "LOCK_BACKENDS",
        "RULE_ENGINES",
        "Alignment",
        "Balancer",
        "CheckResult",
        "CompiledRule",
        "Endpoint",
        "EvaluationFailure",
        "GrantingLimiter",
        "HealthCheck",
        "HealthStatus",
        "LimitDecision",
        "Limiter",
        "LoadAwareBalancer",
        "LockBackend",
        "LockEntry",
        "LockGrant",
        "LockMode",
        "LockSession",
        "LockState",
        "Plugin",
        "PluginFamily",
        "PluginSet",
        "QuotaGrant",
        "Rate",
        "ReleaseOutcome",
        "ReleasingLimiter",
        "RuleEngine",
        "Safety",
        "Verdict",
        "load_all",
        "load_plugins",
    ]
    assert all(hasattr(package, name) for name in package.__all__)
