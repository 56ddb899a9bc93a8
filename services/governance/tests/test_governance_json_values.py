"""Record parsing: orjson's speed, json's exact results."""

from __future__ import annotations

import json
import math

import pytest

from tessera.governance._json_values import parse_json

CASES = [
    b'{"a": 1, "b": [1.5, "x", null, true], "c": {"d": "\\u00e9"}}',
    b'{"big": 18446744073709551616, "bigger": -123456789012345678901234567890}',
    b'{"max": 18446744073709551615, "min": -9223372036854775808}',
    b'{"a": 1e400, "b": -1e400}',
    b'{"a": "\\ud800"}',
    b'{"a": 1, "a": 2}',
    b'{"x": 0.1, "y": 1.7976931348623157e308, "z": 5e-324}',
    b"[]",
    b'[{"deep": [-18446744073709551617]}, 9223372036854775808, 1.5e19]',
    b"12345678901234567890123",
]


@pytest.mark.parametrize("raw", CASES)
def test_parse_json_gives_what_json_gives(raw):
    parsed, expected = parse_json(raw), json.loads(raw)
    assert parsed == expected
    assert repr(parsed) == repr(expected)  # same types too: ints stay ints


def test_nan_is_parsed_as_json_parses_it():
    assert math.isnan(parse_json(b'{"a": NaN}')["a"])


@pytest.mark.parametrize("raw", [b"{", b'{"a": }', b"\xff\xfe"])
def test_bad_text_raises_what_json_raises(raw):
    with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)) as ours:
        parse_json(raw)
    with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)) as theirs:
        json.loads(raw)
    assert str(ours.value) == str(theirs.value)
