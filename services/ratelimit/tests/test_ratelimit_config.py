from pathlib import Path

import pytest

from tessera.core import ConfigError, ValidationError
from tessera.ratelimit import load_directory, match, parse_domain
from tessera.ratelimit._plan import redis_key

CONFIGS = Path(__file__).with_name("configs")
ALGORITHMS = {
    "fixed_window",
    "sliding_window",
    "token_bucket",
    "gcra",
    "leaky_bucket",
    "concurrency",
}


def parse_file(path: Path):
    return parse_domain(path.read_text(), algorithms=ALGORITHMS, source=f"{path.name}:")


def test_ratelimit_config_envoy_files_load_unchanged() -> None:
    domains = load_directory(CONFIGS, algorithms=ALGORITHMS)
    assert set(domains) == {"edge_proxy_per_ip", "messaging", "api", "quotas"}
    messaging = domains["messaging"]
    assert messaging.failure_mode == "open"
    rule = messaging.root.children["to_number"].rate_limit
    assert rule is not None
    assert (rule.requests_per_unit, rule.unit, rule.period_s, rule.algorithm) == (
        100,
        "day",
        86400.0,
        "fixed_window",
    )
    assert domains["api"].failure_mode == "closed"


@pytest.mark.parametrize(
    ("name", "field", "description"),
    [
        ("bad_yaml.yaml", "bad_yaml.yaml:", "invalid YAML"),
        ("duplicate_key.yaml", "duplicate_key.yaml:", "duplicate key 'key'"),
        ("duplicate_descriptor.yaml", "duplicate_descriptor.yaml:descriptors[1]", "duplicate"),
        ("unknown_unit.yaml", "unknown_unit.yaml:descriptors[0].rate_limit.unit", "must be one"),
        (
            "negative_limit.yaml",
            "negative_limit.yaml:descriptors[0].descriptors[0].rate_limit.requests_per_unit",
            "must be >= 0",
        ),
        (
            "unknown_algorithm.yaml",
            "unknown_algorithm.yaml:descriptors[0].rate_limit.algorithm",
            "unknown algorithm 'magic'",
        ),
        ("unknown_field.yaml", "unknown_field.yaml:descriptors[0].rate_limt", "unknown field"),
    ],
)
def test_ratelimit_config_rejects_bad_file_naming_the_field(
    name: str, field: str, description: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_file(CONFIGS / "bad" / name)
    [violation] = raised.value.violations
    assert violation.field == field
    assert description in violation.description


def test_ratelimit_config_directory_with_a_bad_file_names_it(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text((CONFIGS / "messaging.yaml").read_text())
    (tmp_path / "unknown_unit.yaml").write_text((CONFIGS / "bad/unknown_unit.yaml").read_text())
    with pytest.raises(ConfigError, match=r"unknown_unit.yaml:descriptors\[0\].rate_limit.unit"):
        load_directory(tmp_path, algorithms=ALGORITHMS)


def test_ratelimit_config_rejects_two_files_for_one_domain(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yml"):
        (tmp_path / name).write_text((CONFIGS / "messaging.yaml").read_text())
    with pytest.raises(ConfigError, match=r"configured by a\.yaml too"):
        load_directory(tmp_path, algorithms=ALGORITHMS)


def test_ratelimit_config_reports_every_violation_at_once() -> None:
    text = (
        "domain: x\nfailure_mode: sideways\n"
        "descriptors:\n  - value: v\n  - key: k\n    shadow_mode: 1\n"
    )
    with pytest.raises(ValidationError) as raised:
        parse_domain(text, algorithms=ALGORITHMS)
    assert [v.field for v in raised.value.violations] == [
        "failure_mode",
        "descriptors[0].key",
        "descriptors[1].shadow_mode",
    ]


@pytest.mark.parametrize(
    ("entries", "path"),
    [
        ((("to_number", "123"),), "descriptors[1]"),
        ((("message_type", "marketing"), ("to_number", "123")), "descriptors[0].descriptors[0]"),
        ((("path", "/api/users"),), "descriptors[2]"),
        ((("path", "/web"),), None),
        ((("message_type", "marketing"),), None),
        ((("to_number", "1"), ("extra", "x")), None),
    ],
)
def test_ratelimit_config_matches_like_envoy(
    entries: tuple[tuple[str, str], ...], path: str | None
) -> None:
    config = parse_file(CONFIGS / "messaging.yaml")
    found = match(config, entries)
    assert (found.rule.path if found.rule else None) == path
    assert len(found.steps) >= 1


def test_ratelimit_config_exact_value_wins_over_key_only() -> None:
    config = parse_file(CONFIGS / "edge_proxy_per_ip.yaml")
    blocked = match(config, (("remote_address", "50.0.0.5"),)).rate_limit
    anyone = match(config, (("remote_address", "10.0.0.1"),)).rate_limit
    assert blocked is not None
    assert anyone is not None
    assert (blocked.requests_per_unit, anyone.requests_per_unit) == (0, 10)


def test_ratelimit_config_allow_and_deny_lists() -> None:
    config = parse_file(CONFIGS / "tessera_extensions.yaml")
    assert match(config, (("tenant", "ops"),)).listed == "allow"
    assert match(config, (("tenant", "banned"),)).listed == "deny"
    assert match(config, (("tenant", "acme"),)).listed == ""


def test_ratelimit_redis_keys_never_collide_where_envoy_keys_do() -> None:
    # envoyproxy/ratelimit writes both as "a_b_c": key_value pairs joined by "_".
    one = redis_key("d", "fixed_window", (("a_b", "c"),))
    two = redis_key("d", "fixed_window", (("a", "b_c"),))
    three = redis_key("d", "fixed_window", (("a", "b&c=d"),))
    four = redis_key("d", "fixed_window", (("a", "b"), ("c", "d")))
    assert len({one, two, three, four}) == 4
    assert one.startswith("tessera:ratelimit:fixed_window:{d}:")
