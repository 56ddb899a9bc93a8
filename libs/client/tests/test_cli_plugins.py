import json
from typing import Any

import pytest

from tessera.core.plugins import FAMILIES

BALANCERS = "tessera.balancers"


@pytest.fixture
def plugin_env(make_distribution: Any, site_dir: Any) -> dict[str, str]:
    make_distribution(
        "broken-plugin",
        {BALANCERS: {"broken": "broken_plugin:BrokenBalancer"}},
        {"broken_plugin": 'raise ImportError("broken_plugin needs libmissing")\n'},
    )
    make_distribution(
        "good-plugin",
        {BALANCERS: {"first": "good_plugin:FirstBalancer"}},
        {
            "good_plugin": """
            class FirstBalancer:
                def pick(self, instances, key):
                    return instances[0]
            """
        },
    )
    return {"PYTHONPATH": str(site_dir)}


def test_plugins_list_json_reports_the_broken_plugin_and_lists_the_good_one(
    run_cli: Any, plugin_env: dict[str, str]
) -> None:
    result = run_cli("plugins", "list", "--json", env=plugin_env)

    assert result.returncode == 0, result.stderr
    balancers = json.loads(result.stdout)[BALANCERS]
    good = {plugin["name"]: plugin for plugin in balancers["plugins"]}["first"]
    assert good["distribution"] == "good-plugin"
    assert good["version"] == "0.1"
    assert good["value"] == "good_plugin:FirstBalancer"
    failures = {failure["name"]: failure for failure in balancers["failures"]}
    assert set(failures) == {"broken"}
    assert failures["broken"]["group"] == BALANCERS
    assert "ImportError" in failures["broken"]["error"]
    assert "libmissing" in failures["broken"]["error"]
    assert all(plugin["name"] != "broken" for plugin in balancers["plugins"])


def test_plugins_list_table_marks_failures(run_cli: Any, plugin_env: dict[str, str]) -> None:
    result = run_cli("plugins", "list", env=plugin_env)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    broken = next(line for line in lines if " broken " in line)
    assert "FAILED" in broken
    assert "libmissing" in result.stdout
    first = next(line for line in lines if " first " in line)
    assert "good-plugin" in first
    assert "FAILED" not in first
    assert "1 plugin(s) FAILED to load" in result.stdout


def test_plugins_list_without_failures_says_none_failed(run_cli: Any) -> None:
    result = run_cli("plugins", "list", "--json")

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == set(FAMILIES)
    assert all(family["failures"] == [] for family in document.values())
