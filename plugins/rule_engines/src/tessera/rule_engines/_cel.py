from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

# cel-expr-python ships .pyi stubs but no py.typed marker, so mypy does not read them.
from cel_expr_python import cel  # type: ignore[import-untyped]

from tessera.core import ValidationError
from tessera.core.plugins import CompiledRule, EvaluationFailure, Verdict
from tessera.rule_engines._cel_cost import CostLimit, estimate_cost

_RECORD = "record"
# cel-cpp reports "INVALID_ARGUMENT: ERROR: <input>:1:15: Syntax error: ... [INVALID_ARGUMENT]"
_POSITION = re.compile(r"<input>:(\d+):(\d+):\s*")
_STATUS_PREFIX = re.compile(r"^[A-Z_]+:\s*(ERROR:\s*)?")
_STATUS_SUFFIX = re.compile(r"\s*\[[A-Z_]+\]\s*$")
_CACHED_LISTS = 1024


class CelEngine:
    """Rules in the Common Expression Language, run by Google's cel-cpp runtime.

    A rule is a CEL expression over one variable, `record` (a map from field names to JSON
    values), that evaluates to a bool: `record.age >= 18 && has(record.email)`. Expressions are
    parsed and type-checked when compiled; an error names the line and column. A missing field
    or a type mismatch at run time is an `EvaluationFailure`, as in CEL itself; a rule that
    yields a non-bool value is one too.

    Args:
        limit: The cost budget (see `estimate_cost`); expressions over it are refused.

    Thread-safe: the environment and compiled expressions are immutable; the cache of rule lists
    only ever gains complete entries.

    """

    def __init__(self, limit: CostLimit | None = None) -> None:
        self._limit = limit or CostLimit()
        self._env = cel.NewEnv(variables={_RECORD: cel.Type.Map(cel.Type.STRING, cel.Type.DYN)})
        # Rule lists compiled into one program, by their expressions. A plain dict is safe to
        # share between threads here: a race at worst compiles the same list twice.
        self._lists: dict[tuple[str, ...], Any] = {}

    def compile(self, expression: str) -> CompiledRule:
        """Parse, type-check and cost-check a CEL expression (see `RuleEngine.compile`)."""
        limit = self._limit
        if not expression.strip():
            raise ValidationError.for_field("expression", "must not be empty")
        if len(expression) > limit.max_expression_chars:
            raise ValidationError.for_field(
                "expression", f"is longer than {limit.max_expression_chars} characters"
            )
        cost = estimate_cost(expression, limit)
        if cost > limit.max_cost:
            raise ValidationError.for_field(
                "expression",
                f"estimated cost {cost} is over the limit of {limit.max_cost}: a comprehension "
                f"(all, exists, map, filter) nested in another or reading 'record' in its body "
                f"is quadratic in the record size",
            )
        try:
            program = self._env.compile(expression)
        except RuntimeError as error:
            raise ValidationError.for_field("expression", _describe(str(error))) from None
        result = program.return_type()
        if result != cel.Type.BOOL and result != cel.Type.DYN:
            raise ValidationError.for_field(
                "expression", f"must evaluate to bool, not {result.name()}"
            )
        return CompiledRule(expression=expression, program=program)

    def evaluate(
        self, rules: Sequence[CompiledRule], record: Mapping[str, object]
    ) -> list[Verdict]:
        """Evaluate every rule on one record (see `RuleEngine.evaluate`).

        Several rules run first as one CEL list `[rule1, rule2, ...]`, a single call into the
        runtime (about a third cheaper for five rules); when that list is an error, because a
        rule errs on this record, each rule is evaluated on its own to give every verdict.
        """
        if len(rules) > 1:
            together = self._together(rules).eval(data={_RECORD: record}).plain_value()
            if type(together) is list and all(type(verdict) is bool for verdict in together):
                return together
        # One activation per record: the record is converted to CEL values once for all rules.
        activation = self._env.Activation({_RECORD: record})
        return [_verdict(rule.program.eval(activation)) for rule in rules]  # type: ignore[attr-defined]

    def _together(self, rules: Sequence[CompiledRule]) -> Any:
        key = tuple(rule.expression for rule in rules)
        program = self._lists.get(key)
        if program is None:
            if len(self._lists) >= _CACHED_LISTS:
                self._lists.clear()  # only costs recompiling; bounds memory
            # Every element compiled alone, so the list compiles and fits the cost limit.
            program = self._lists[key] = self._env.compile(
                "[" + ",\n".join(f"({expression})" for expression in key) + "]"
            )
        return program


def _verdict(value: Any) -> Verdict:
    result = value.value()
    if type(result) is bool:
        return result
    if value.type() == cel.Type.ERROR:
        return EvaluationFailure(_describe(str(result)))
    return EvaluationFailure(f"the rule yielded {value.type().name()}, not bool")


def _describe(message: str) -> str:
    """Turn a cel-cpp status message into 'line L, column C: reason' plus the caret excerpt."""
    text = _STATUS_SUFFIX.sub("", _STATUS_PREFIX.sub("", message.strip()))
    text = _POSITION.sub(lambda m: f"line {m.group(1)}, column {m.group(2)}: ", text, count=1)
    return text.rstrip()
