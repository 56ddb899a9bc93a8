import pytest

from tessera.core import ValidationError
from tessera.ratelimit import CircuitBreakerRule, parse_domain

ALGORITHMS = {"fixed_window"}


def breaker(**fields: object) -> str:
    lines = "".join(f"      {name}: {value}\n" for name, value in fields.items())
    return f"domain: d\ndescriptors:\n  - key: target\n    circuit_breaker:\n{lines}"


def test_ratelimit_breaker_config_parses_every_field() -> None:
    config = parse_domain(
        breaker(
            strategy="slow_call_ratio",
            threshold=0.25,
            slow_call_s=0.2,
            window=50,
            min_calls=10,
            open_s=5,
            half_open_probes=3,
        ),
        algorithms=ALGORITHMS,
    )
    rule = config.root.children["target"]
    assert rule.rate_limit is None
    assert rule.circuit_breaker == CircuitBreakerRule("slow_call_ratio", 0.25, 50, 10, 5.0, 3, 0.2)


def test_ratelimit_breaker_config_defaults_min_calls_to_the_window_and_one_probe() -> None:
    config = parse_domain(
        breaker(strategy="error_count", threshold=3, window=20, open_s=1), algorithms=ALGORITHMS
    )
    rule = config.root.children["target"].circuit_breaker
    assert rule is not None
    assert (rule.min_calls, rule.half_open_probes) == (20, 1)


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"strategy": "sometimes", "window": 1, "open_s": 1, "threshold": 1}, "strategy"),
        ({"strategy": "error_ratio", "window": 4, "open_s": 1, "threshold": 1.5}, "threshold"),
        ({"strategy": "error_count", "window": 4, "open_s": 1, "threshold": 1.5}, "threshold"),
        ({"strategy": "error_ratio", "window": 0, "open_s": 1, "threshold": 0.5}, "window"),
        (
            {"strategy": "error_ratio", "window": 4, "min_calls": 5, "open_s": 1, "threshold": 1},
            "min_calls",
        ),
        ({"strategy": "error_ratio", "window": 4, "open_s": 0, "threshold": 0.5}, "open_s"),
        ({"strategy": "slow_call_ratio", "window": 4, "open_s": 1, "threshold": 1}, "slow_call_s"),
        (
            {
                "strategy": "error_ratio",
                "window": 4,
                "open_s": 1,
                "threshold": 1,
                "slow_call_s": 1,
            },
            "slow_call_s",
        ),
        (
            {
                "strategy": "error_ratio",
                "window": 4,
                "open_s": 1,
                "threshold": 1,
                "half_open_probes": 0,
            },
            "half_open_probes",
        ),
        ({"strategy": "error_ratio", "window": 4, "open_s": 1, "threshold": 1, "x": 1}, "x"),
    ],
)
def test_ratelimit_breaker_config_rejects_bad_fields_by_path(
    fields: dict[str, object], path: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_domain(breaker(**fields), algorithms=ALGORITHMS)
    assert [v.field for v in raised.value.violations] == [f"descriptors[0].circuit_breaker.{path}"]
