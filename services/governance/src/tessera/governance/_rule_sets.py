from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tessera.core import ValidationError
from tessera.core.plugins import CompiledRule, EvaluationFailure, RuleEngine, Verdict

SEVERITIES = ("INFO", "WARNING", "ERROR")
MODES = ("ENFORCE", "SHADOW")


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One rule as stored.

    Attributes:
        name: Unique within its rule set.
        expression: Source in the rule set's engine language.
        message: Reported when the rule fails.
        severity: `INFO`, `WARNING` or `ERROR`.
        mode: `ENFORCE` or `SHADOW`.

    """

    name: str
    expression: str
    message: str
    severity: str
    mode: str


@dataclass(frozen=True, slots=True)
class RuleSetSpec:
    """One version of a rule set as stored (the JSON value of its etcd key).

    Attributes:
        name: The rule set's name.
        version: 1, 2, ... (0 before the store allocates it).
        engine: The rule engine plugin's name.
        rules: The rules, in evaluation order.

    """

    name: str
    version: int
    engine: str
    rules: tuple[RuleSpec, ...]

    def to_json(self) -> bytes:
        """Encode for etcd."""
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> RuleSetSpec:
        """Decode what `to_json` wrote."""
        value: dict[str, Any] = json.loads(raw)
        rules = tuple(RuleSpec(**rule) for rule in value.pop("rules"))
        return cls(rules=rules, **value)


@dataclass(frozen=True, slots=True)
class RuleVerdict:
    """The outcome of one rule on one record.

    Attributes:
        rule: The rule.
        outcome: `PASSED`, `FAILED` or `ERRORED`.
        message: The rule's message when it failed, the engine's reason when it errored.

    """

    rule: RuleSpec
    outcome: str
    message: str


#: Whether a record is valid, and one verdict per rule in rule order.
Outcome = tuple[bool, list[RuleVerdict]]


class CompiledRuleSet:
    """A rule set whose rules an engine compiled, ready to evaluate records.

    Immutable; safe to share between calls and threads.

    Args:
        spec: The rule set.
        engine: The engine named by `spec.engine`.

    Raises:
        ValidationError: A rule does not compile; the field is `rule_set.rules[i].expression`.

    """

    def __init__(self, spec: RuleSetSpec, engine: RuleEngine) -> None:
        self.spec = spec
        self._engine = engine
        self._compiled = [
            _compile(engine, index, rule.expression) for index, rule in enumerate(spec.rules)
        ]
        # Passed and failed verdicts never vary per record: built once, shared by every record.
        self._passed = [RuleVerdict(rule, "PASSED", "") for rule in spec.rules]
        self._failed = [RuleVerdict(rule, "FAILED", rule.message) for rule in spec.rules]
        # A record is invalid when an enforced rule of severity ERROR fails or errors.
        self._blocking = [
            rule.mode == "ENFORCE" and rule.severity == "ERROR" for rule in spec.rules
        ]
        self._all_true = (True,) * len(spec.rules)
        #: The outcome of every record that passes every rule: one shared object, so callers
        #: can recognise it by identity (`outcome is all_passed`). Do not modify it.
        self.all_passed: Outcome = (True, self._passed)

    def as_version(self, spec: RuleSetSpec) -> CompiledRuleSet:
        """Return the same compiled rules under `spec`, the stored form of the same rules."""
        clone = copy.copy(self)
        clone.spec = spec
        return clone

    def evaluate(self, record: Mapping[str, object]) -> Outcome:
        """Evaluate every rule on one record.

        Returns:
            Whether the record is valid, and one verdict per rule in rule order.

        """
        return self._outcome(self._engine.evaluate(self._compiled, record))

    def evaluate_many(self, records: Sequence[Mapping[str, object]]) -> list[Outcome]:
        """Evaluate every rule on each record, in order (CPU-bound; run it off the event loop).

        One engine call for the whole batch (`RuleEngine.evaluate_batch`); every record that
        passes every rule gets the shared `all_passed` outcome.
        """
        all_true, passed = self._all_true, self.all_passed
        return [
            passed if verdicts == all_true else self._outcome(verdicts)
            for verdicts in self._engine.evaluate_batch(self._compiled, records)
        ]

    def _outcome(self, found: Sequence[Verdict]) -> Outcome:
        valid = True
        verdicts = []
        for index, verdict in enumerate(found):
            if verdict is True:
                verdicts.append(self._passed[index])
                continue
            valid = valid and not self._blocking[index]
            if isinstance(verdict, EvaluationFailure):
                verdicts.append(RuleVerdict(self.spec.rules[index], "ERRORED", verdict.reason))
            else:
                verdicts.append(self._failed[index])
        return valid, verdicts


def _compile(engine: RuleEngine, index: int, expression: str) -> CompiledRule:
    try:
        return engine.compile(expression)
    except ValidationError as error:
        reason = "; ".join(violation.description for violation in error.violations)
        raise ValidationError.for_field(
            f"rule_set.rules[{index}].expression", reason or error.message
        ) from None
