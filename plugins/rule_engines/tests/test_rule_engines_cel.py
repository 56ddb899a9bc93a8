from __future__ import annotations

import pytest

from tessera.core import ValidationError
from tessera.core.plugins import EvaluationFailure
from tessera.rule_engines import CelEngine, CostLimit, estimate_cost

ENGINE = CelEngine()


def describe(expression: str) -> str:
    with pytest.raises(ValidationError) as caught:
        ENGINE.compile(expression)
    (violation,) = caught.value.violations
    assert violation.field == "expression"
    return violation.description


def test_syntax_error_names_line_and_column():
    assert describe("record.age >=").startswith("line 1, column 14: Syntax error")


def test_type_error_is_found_at_compile_time_with_position():
    assert describe('record.a > 1 && 1 + "x" == 2').startswith(
        "line 1, column 19: found no matching overload"
    )


def test_non_bool_expression_is_refused():
    assert describe("1 + 2") == "must evaluate to bool, not INT"


def test_expression_over_the_length_limit_is_refused():
    assert "longer than" in describe("true && " * 600 + "true")


@pytest.mark.parametrize(
    "expression",
    [
        "record.a.all(x, record.b.exists(y, y == x))",
        "record.a.all(x, x.all(y, y > 0))",
        "record.a.map(x, record.a).size() > 0",
    ],
)
def test_quadratic_expressions_are_over_the_cost_limit(expression):
    assert "over the limit" in describe(expression)


@pytest.mark.parametrize(
    ("expression", "cost"),
    [
        ("record.a > 1", 5),
        # 5 tokens before the macro's "(", which opens the body: "(x, x > 0" is 6 tokens x 10.
        ("record.a.all(x, x > 0)", 5 + 6 * 10 + 1),
        ("'all(' == record.s", 6),  # a macro name inside a string literal costs nothing extra
        ("record.a.all(x, x > 0) && record.b", 5 + 6 * 10 + 1 + 5),
    ],
)
def test_cost_estimate(expression, cost):
    assert estimate_cost(expression, CostLimit(max_list_length=10)) == cost


def test_single_comprehensions_over_a_record_list_compile():
    rule = ENGINE.compile("record.items.all(i, i.qty > 0 && i.sku.startsWith('A'))")
    assert ENGINE.evaluate([rule], {"items": [{"qty": 1, "sku": "A1"}]}) == [True]
    assert ENGINE.evaluate([rule], {"items": [{"qty": 0, "sku": "A1"}]}) == [False]


def test_standard_semantics():
    rules = [
        ENGINE.compile(text)
        for text in [
            "has(record.a)",
            "record.n == 2.0",  # heterogeneous numeric equality, as the CEL spec defines
            "record.s.matches('^[a-z]+$')",
            "record.n / 0 == 1",
            "record.missing == 1",
            "record.s",
        ]
    ]
    verdicts = ENGINE.evaluate(rules, {"n": 2, "s": "abc"})
    assert verdicts[:3] == [False, True, True]
    assert verdicts[3] == EvaluationFailure("divide by zero")
    assert isinstance(verdicts[4], EvaluationFailure)
    assert "missing" in verdicts[4].reason
    assert verdicts[5] == EvaluationFailure("the rule yielded STRING, not bool")
