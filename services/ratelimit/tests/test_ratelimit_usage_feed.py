"""Pure logic of the usage feed: rates, their encoding, the window's span (no servers)."""

import pytest

from tessera.core import BackendError
from tessera.ratelimit import RuleUsage
from tessera.ratelimit._adaptive import AdaptiveUsage, _feed_key, _usage
from tessera.ratelimit._usage_feed import feed_span_s, rule_rates
from tessera.ratelimit.jobs import FEED_PREFIX, RuleRates, usage_feed_key


def test_ratelimit_feed_rates_are_decisions_per_second_over_the_span() -> None:
    usage = [
        RuleUsage("api", "descriptors[0]", admitted=90, denied=20, shadow_denied=5, unavailable=5),
        RuleUsage("api", "named", admitted=12),
        RuleUsage("edge", "descriptors[1]", denied=60),
    ]
    rates = rule_rates(usage, 120.0)
    assert rates == {
        "api": {
            "descriptors[0]": RuleRates(1.0, 0.75, 20 / 120, 120.0),
            "named": RuleRates(0.1, 0.1, 0.0, 120.0),
        },
        "edge": {"descriptors[1]": RuleRates(0.5, 0.0, 0.5, 120.0)},
    }


@pytest.mark.parametrize(
    ("window_s", "now_s", "span_s"),
    [
        (120.0, 6000.0, 120.0),  # on a minute boundary: exactly the window
        (120.0, 6030.0, 150.0),  # back to the start of the minute 120 s ago
        (1.0, 6059.5, 59.5),
        (1.0, 6000.5, 60.5),  # 1 s ago was the previous minute: all of it counts
    ],
)
def test_ratelimit_feed_span_reaches_back_to_whole_minutes(
    window_s: float, now_s: float, span_s: float
) -> None:
    assert feed_span_s(window_s, now_s) == pytest.approx(span_s)


def test_ratelimit_feed_values_round_trip_and_reject_garbage() -> None:
    rates = RuleRates(12.5, 10.25, 2.25, 150.0)
    assert rates.encode() == "12.500000 10.250000 2.250000 150.000"
    assert RuleRates.decode(rates.encode()) == rates
    for garbage in ("", "1 2 3", "a b c d", "1 2 3 4 5"):
        with pytest.raises(BackendError) as raised:
            RuleRates.decode(garbage)
        assert not raised.value.retryable


def test_ratelimit_feed_key_shares_the_adaptive_keys_slot() -> None:
    assert usage_feed_key("api") == f"{FEED_PREFIX}{{api}}"
    adaptive = "tessera:ratelimit:adaptive:{api}:backend=a%7Bb"
    assert _feed_key(adaptive) == usage_feed_key("api")


def test_ratelimit_stored_step_usage_is_read_back_or_absent() -> None:
    record = b"60.000000 50.000000 10.000000 120.000"
    assert _usage(record, 0.6, b"0") == AdaptiveUsage(
        RuleRates(60.0, 50.0, 10.0, 120.0), 0.6, increase_held=False
    )
    assert _usage("0 0 0 120", 0.0, 1) == AdaptiveUsage(RuleRates(0, 0, 0, 120), 0.0, True)
    # no feed was read by the last step (or no step yet)
    assert _usage(b"", -1.0, b"0") is None
    assert _usage(None, -1.0, None) is None
