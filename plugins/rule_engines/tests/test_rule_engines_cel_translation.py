"""The Python translation of CEL rules against cel-cpp itself, on many awkward records."""

from __future__ import annotations

import itertools
import random

import pytest

from tessera.rule_engines import CelEngine
from tessera.rule_engines._cel_translation import convertible, translate

#: Rules inside the translated subset, each reading fields that the records below vary.
TRANSLATED = [
    "record.a >= 0 && record.a <= 150",
    "record.a < 2.5",
    "record.a == 2",
    "record.a != record.b",
    "record.a == record.b",
    "record.a < record.b",
    "record.s.matches('^[^@]+@[^@]+$')",
    "record.s.matches('^[a-z0-9._-]{2,5}$')",
    r"record.s.matches('\\d+')",
    "record.s in ['active', 'pending', 'closed']",
    "size(record.s) == 3",
    "record.s.size() > 1",
    "size(record.l) >= 2",
    "has(record.a) ? record.a > 1 : true",
    "has(record.m.x)",
    "record.m.x == null",
    "record.m['x'] == 1",
    "record.l[0] == 1",
    "record.a + 1 > 3",
    "record.a - record.b == 0",
    "record.a * 2 < 10",
    "record.a / 2 == 1",
    "record.a % 3 == 1",
    "-record.a < 0",
    "record.s + 'x' == 'abcx'",
    "record.s.startsWith('a') || record.s.endsWith('z')",
    "record.s.contains('@') && record.a > 0",
    "!record.f",
    "record.f == true",
    "record.f || record.a > 0",
    "record.a > 0 && record.f",
    "record.s < 'b'",
    "record.f ? record.a : record.b",
]
#: Rules outside it: they must still evaluate, through cel-cpp alone.
UNTRANSLATED = ["record.l.all(x, x > 0)", "int(record.a) > 1", "record.s.matches('\\\\s')"]

VALUES = [
    0,
    1,
    2,
    3,
    -1,
    150,
    151,
    2**63 - 1,
    -(2**63),
    2**63,
    2**64 - 1,
    2**64,
    0.0,
    2.0,
    2.5,
    -1.5,
    1e308,
    float("nan"),
    float("inf"),
    "",
    "a",
    "abc",
    "a@b",
    "abcz",
    "active",
    "12",
    "ü@ß",
    "ab\n",
    "\ud800",
    True,
    False,
    None,
    [],
    [1, 2],
    [1.0, "x"],
    {},
    {"x": 1},
    {"x": None},
    {"y": 2},
]


def _records(count: int) -> list[dict[str, object]]:
    rng = random.Random(6)
    out = []
    for _ in range(count):
        record: dict[str, object] = {}
        for name in ("a", "b", "s", "l", "m", "f"):
            if rng.random() < 0.85:
                record[name] = rng.choice(VALUES)
        out.append(record)
    return out


def _reference(rules, record):
    # cel-cpp alone: the verdicts the translation must reproduce.
    return REFERENCE.evaluate(rules, record)


REFERENCE = CelEngine(translate=False)
FAST = CelEngine()


@pytest.mark.parametrize("expression", TRANSLATED)
def test_every_rule_of_the_subset_is_translated(expression):
    assert translate(expression) is not None


@pytest.mark.parametrize("expression", UNTRANSLATED)
def test_rules_outside_the_subset_are_not_translated(expression):
    assert translate(expression) is None


def test_translated_verdicts_are_cel_cpps_on_every_record():
    reference_rules = [REFERENCE.compile(e) for e in TRANSLATED + UNTRANSLATED]
    fast_rules = [FAST.compile(e) for e in TRANSLATED + UNTRANSLATED]
    records = _records(1000)
    decided = 0
    for record in records:
        expected = _reference(reference_rules, record)
        for rule_ref, rule_fast, verdict in zip(reference_rules, fast_rules, expected, strict=True):
            assert FAST.evaluate([rule_fast], record) == [verdict], (rule_ref.expression, record)
        assert FAST.evaluate(fast_rules, record) == expected, record
        decided += sum(type(v) is bool for v in expected)
    # Batches give the same, and the plain records were many.
    batch = FAST.evaluate_batch(fast_rules[: len(TRANSLATED)], records)
    for record, verdicts in zip(records, batch, strict=True):
        assert list(verdicts) == _reference(reference_rules[: len(TRANSLATED)], record), record
    assert decided > 3_000  # rule-record pairs with a true or false verdict, all compared


def test_records_cel_cpp_cannot_convert_are_left_to_it():
    assert convertible({"a": 1, "b": [1, {"c": "x"}], "d": None, "e": 2.5, "f": True})
    assert not convertible({"a": 2**64})
    assert not convertible({"a": ["\ud800"]})
    assert not convertible({"a": b"bytes"})
    assert not convertible({1: "x"})
    # cel-cpp fails every rule of such a record, even rules that never read the bad field.
    rules = [FAST.compile("record.b == 1")]
    assert FAST.evaluate(rules, {"a": 2**64, "b": 1}) == REFERENCE.evaluate(
        [REFERENCE.compile("record.b == 1")], {"a": 2**64, "b": 1}
    )


def test_translated_source_reads_like_the_rule():
    translation = translate("record.age >= 18 && record.status in ['a', 'b']")
    assert translation is not None
    assert translation.source == "((_num(record['age']) >= 18) and (_str(record['status']) in _c0))"
    assert translation.constants == {"_c0": frozenset({"a", "b"})}
    assert list(itertools.islice(translation.constants, 1)) == ["_c0"]


@pytest.mark.parametrize(
    "pattern",
    ["[[:alpha:]]", "a*+", "^*", "a{2000}", "a{3,2}", "[a--b]", r"\s", "x{,3}", "[a[b]", r"\bx"],
)
def test_patterns_where_re2_and_python_may_differ_are_left_to_re2(pattern):
    assert translate(f"record.s.matches('{pattern}')".replace("\\", "\\\\")) is None


def test_the_end_anchor_means_the_end_of_the_text_as_in_re2():
    rules = [FAST.compile("record.s.matches('^ab$')")]
    assert (
        FAST.evaluate(rules, {"s": "ab\n"})
        == REFERENCE.evaluate([REFERENCE.compile("record.s.matches('^ab$')")], {"s": "ab\n"})
        == [False]
    )
