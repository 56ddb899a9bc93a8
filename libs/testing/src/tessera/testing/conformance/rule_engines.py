"""Conformance kit of the `tessera.rule_engines` family: the `RuleEngine` contract on shared cases.

Each engine has its own language, so the kit names three rules by what they mean and the engine's
author writes them in the engine's language (`RuleEngineSubject.rules`):

- `adult`: the record's field `age` is a number of at least 18;
- `contact`: the record has a string field `email` containing `@`;
- `known_status`: the field `status` is `"active"` or `"pending"`.

The kit then checks, on the same table of records for every engine, the verdicts, their order,
that a record the rule cannot handle (missing field, wrong type) yields False or an
`EvaluationFailure` rather than an exception, that invalid expressions raise `ValidationError`
naming `expression`, and that compiled rules are shared safely between threads. Point it at a
plugin from the plugin's own tests::

    from tessera.testing.conformance.rule_engines import RULE_ENGINE_CHECKS, RuleEngineSubject

    @pytest.mark.parametrize("check", RULE_ENGINE_CHECKS, ids=lambda c: c.__name__)
    def test_conformance(check):
        check(RuleEngineSubject(MyEngine(), rules={...}, invalid=["..."]))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from tessera.core import ValidationError
from tessera.core.plugins import RULE_ENGINES, CompiledRule, EvaluationFailure, RuleEngine

#: The rules every engine writes in its language, by name.
RULE_NAMES = ("adult", "contact", "known_status")

#: (record, expected verdict of adult, contact, known_status) for well-formed records.
RECORDS: Sequence[tuple[Mapping[str, object], tuple[bool, bool, bool]]] = (
    ({"age": 30, "email": "a@example.org", "status": "active"}, (True, True, True)),
    ({"age": 18, "email": "b@example.org", "status": "pending"}, (True, True, True)),
    ({"age": 17, "email": "c@example.org", "status": "active"}, (False, True, True)),
    ({"age": 40, "email": "no-at-sign", "status": "closed"}, (True, False, False)),
    (
        {"age": 18.5, "email": "@", "status": "pending", "extra": [1, {"x": None}]},
        (True, True, True),
    ),
)

#: Records a rule cannot fully handle: the verdict must be False or an EvaluationFailure.
AWKWARD_RECORDS: Sequence[Mapping[str, object]] = (
    {},
    {"age": "thirty", "email": 12, "status": None},
    {"age": None, "email": ["a@b"], "status": ["active"]},
)


@dataclass(frozen=True)
class RuleEngineSubject:
    """The engine under test and the shared rules written in its language.

    Attributes:
        engine: The engine.
        rules: One expression per name in `RULE_NAMES`.
        invalid: Expressions the engine must refuse (syntax errors, wrong result type, ...).

    """

    engine: RuleEngine
    rules: Mapping[str, str]
    invalid: Sequence[str]

    def compiled(self) -> list[CompiledRule]:
        """Compile the shared rules in `RULE_NAMES` order."""
        return [self.engine.compile(self.rules[name]) for name in RULE_NAMES]


def check_satisfies_the_protocol(subject: RuleEngineSubject) -> None:
    """Check that the engine has every method of `RuleEngine`, synchronous as the Protocol says."""
    assert RULE_ENGINES.violations(subject.engine) == []
    assert isinstance(subject.engine, RuleEngine)


def check_compile_keeps_the_expression(subject: RuleEngineSubject) -> None:
    """Check that a compiled rule carries its source text."""
    for name in RULE_NAMES:
        assert subject.engine.compile(subject.rules[name]).expression == subject.rules[name]


def check_verdicts_on_the_shared_table(subject: RuleEngineSubject) -> None:
    """Check that each rule's verdict on each record is the one its meaning fixes, in rule order."""
    rules = subject.compiled()
    for record, expected in RECORDS:
        assert tuple(subject.engine.evaluate(rules, record)) == expected, record


def check_one_verdict_per_rule_in_order(subject: RuleEngineSubject) -> None:
    """Check that verdicts follow the order of the rules, repeats and all; no rules, none."""
    adult, contact, _ = subject.compiled()
    record = {"age": 10, "email": "x@y", "status": "active"}
    assert subject.engine.evaluate([contact, adult, contact], record) == [True, False, True]
    assert subject.engine.evaluate([], record) == []


def check_awkward_records_never_raise(subject: RuleEngineSubject) -> None:
    """Check that a missing field or wrong type gives False or an EvaluationFailure, no raise."""
    rules = subject.compiled()
    for record in AWKWARD_RECORDS:
        verdicts = subject.engine.evaluate(rules, record)
        assert len(verdicts) == len(rules)
        for verdict in verdicts:
            assert verdict is False or isinstance(verdict, EvaluationFailure), (record, verdict)
            if isinstance(verdict, EvaluationFailure):
                assert verdict.reason


def check_invalid_expressions_name_the_field(subject: RuleEngineSubject) -> None:
    """Check that compiling an invalid expression raises ValidationError naming `expression`."""
    assert subject.invalid, "give at least one invalid expression"
    for expression in subject.invalid:
        with pytest.raises(ValidationError) as caught:
            subject.engine.compile(expression)
        fields = [violation.field for violation in caught.value.violations]
        assert fields == ["expression"], expression
        assert caught.value.violations[0].description


def check_shared_between_threads(subject: RuleEngineSubject) -> None:
    """Check that compiled rules give the same verdicts from several threads at once."""
    rules = subject.compiled()
    work = [record for record, _ in RECORDS] * 50
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = list(pool.map(lambda record: subject.engine.evaluate(rules, record), work))
    expected = [list(verdict) for _, verdict in RECORDS] * 50
    assert verdicts == expected


def check_batches_give_the_verdicts_of_single_records(subject: RuleEngineSubject) -> None:
    """Check that `evaluate_batch` gives, per record and in order, what `evaluate` gives."""
    rules = subject.compiled()
    records = [record for record, _ in RECORDS] + list(AWKWARD_RECORDS)
    batch = subject.engine.evaluate_batch(rules, records)
    assert [list(verdicts) for verdicts in batch] == [
        subject.engine.evaluate(rules, record) for record in records
    ]
    assert subject.engine.evaluate_batch(rules, []) == []


#: Every check of the kit; each takes a `RuleEngineSubject`.
RULE_ENGINE_CHECKS: Sequence[Callable[[RuleEngineSubject], None]] = (
    check_satisfies_the_protocol,
    check_compile_keeps_the_expression,
    check_verdicts_on_the_shared_table,
    check_one_verdict_per_rule_in_order,
    check_awkward_records_never_raise,
    check_batches_give_the_verdicts_of_single_records,
    check_invalid_expressions_name_the_field,
    check_shared_between_threads,
)
