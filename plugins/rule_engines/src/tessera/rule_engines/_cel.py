from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# cel-expr-python ships .pyi stubs but no py.typed marker, so mypy does not read them.
from cel_expr_python import cel  # type: ignore[import-untyped]

from tessera.core import ValidationError
from tessera.core.plugins import CompiledRule, EvaluationFailure, Verdict
from tessera.rule_engines._cel_cost import CostLimit, estimate_cost
from tessera.rule_engines._cel_translation import (
    Translated,
    convertible,
    translate,
    translate_all,
)

_RECORD = "record"
# cel-cpp reports "INVALID_ARGUMENT: ERROR: <input>:1:15: Syntax error: ... [INVALID_ARGUMENT]"
_POSITION = re.compile(r"<input>:(\d+):(\d+):\s*")
_STATUS_PREFIX = re.compile(r"^[A-Z_]+:\s*(ERROR:\s*)?")
_STATUS_SUFFIX = re.compile(r"\s*\[[A-Z_]+\]\s*$")
_CACHED_LISTS = 1024
# Verdicts of a rule list from its Python translation; None when a rule has none.
_AllTranslated = Callable[[Mapping[str, object]], tuple[bool, ...]] | None


@dataclass(frozen=True, slots=True)
class _Program:
    """A compiled rule: cel-cpp's program, and its Python translation when it has one."""

    cel: Any
    translated: Translated | None


class CelEngine:
    """Rules in the Common Expression Language, run by Google's cel-cpp runtime.

    A rule is a CEL expression over one variable, `record` (a map from field names to JSON
    values), that evaluates to a bool: `record.age >= 18 && has(record.email)`. Expressions are
    parsed and type-checked when compiled; an error names the line and column. A missing field
    or a type mismatch at run time is an `EvaluationFailure`, as in CEL itself; a rule that
    yields a non-bool value is one too.

    Speed: rules in the common subset of CEL (field access, comparisons, arithmetic, `in` a list
    of strings, `has`, `size`, `matches` and the string methods; see `_cel_translation`) are
    also translated to Python, which decides a record only where CEL's answer is certain and
    hands every other record (a missing field, a type mismatch, an overflow) to cel-cpp. The
    verdicts are cel-cpp's by construction; the translation skips it, five to ten times slower
    per rule, on the plain records.

    Args:
        limit: The cost budget (see `estimate_cost`); expressions over it are refused.
        translate: Whether to translate rules to Python where possible (False: every record
            goes to cel-cpp; for comparisons and benchmarks).

    Thread-safe: the environment and compiled expressions are immutable; the cache of rule lists
    only ever gains complete entries.

    """

    def __init__(self, limit: CostLimit | None = None, *, translate: bool = True) -> None:
        self._limit = limit or CostLimit()
        self._translate = translate
        self._env = cel.NewEnv(variables={_RECORD: cel.Type.Map(cel.Type.STRING, cel.Type.DYN)})
        # Rule lists compiled into one program, by their expressions. A plain dict is safe to
        # share between threads here: a race at worst compiles the same list twice.
        self._lists: dict[tuple[str, ...], Any] = {}
        # Rule lists translated into one Python function, by their expressions (same care).
        self._translated_lists: dict[tuple[str, ...], _AllTranslated] = {}

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
        translation = translate(expression) if self._translate else None
        return CompiledRule(
            expression=expression,
            program=_Program(program, None if translation is None else translation.function),
        )

    def evaluate(
        self, rules: Sequence[CompiledRule], record: Mapping[str, object]
    ) -> list[Verdict]:
        """Evaluate every rule on one record (see `RuleEngine.evaluate`).

        Translated rules decide first (all of them in one Python call when every rule has a
        translation). The rules they leave undecided run on cel-cpp: several as one CEL list
        `[rule1, rule2, ...]`, a single call into the runtime; when that list is an error,
        because a rule errs on this record, each rule on its own to give every verdict.
        """
        together = self._translated_together(rules)
        if together is not None and convertible(record):
            try:
                return list(together(record))
            except Exception:  # any exception means "undecided": rule by rule, cel-cpp included
                pass
        return self._rule_by_rule(rules, record)

    def evaluate_batch(
        self, rules: Sequence[CompiledRule], records: Sequence[Mapping[str, object]]
    ) -> list[Sequence[Verdict]]:
        """Evaluate every rule on each record (see `RuleEngine.evaluate_batch`)."""
        together = self._translated_together(rules)
        if together is None:
            return [self._rule_by_rule(rules, record) for record in records]
        out: list[Sequence[Verdict]] = []
        for record in records:
            if not convertible(record):
                out.append(self._on_cel(rules, record))
                continue
            try:
                out.append(together(record))
            except Exception:  # any exception means "undecided": rule by rule, cel-cpp included
                out.append(self._rule_by_rule(rules, record))
        return out

    def _rule_by_rule(
        self, rules: Sequence[CompiledRule], record: Mapping[str, object]
    ) -> list[Verdict]:
        if not convertible(record):
            return self._on_cel(rules, record)
        verdicts: list[Verdict] = []
        undecided: list[int] = []
        for index, rule in enumerate(rules):
            translated = rule.program.translated  # type: ignore[attr-defined]
            if translated is not None:
                try:
                    verdicts.append(translated(record))
                    continue
                except Exception:  # any exception means "undecided": cel-cpp decides below
                    pass
            verdicts.append(False)  # a placeholder, replaced below
            undecided.append(index)
        if len(undecided) == len(rules):
            return self._on_cel(rules, record)
        if undecided:
            # Rule by rule: a list program per subset of undecided rules would compile (some
            # milliseconds) for every new combination the records bring.
            pending = [rules[index] for index in undecided]
            decided = self._on_cel(pending, record, together=False)
            for index, verdict in zip(undecided, decided, strict=True):
                verdicts[index] = verdict
        return verdicts

    def _on_cel(
        self, rules: Sequence[CompiledRule], record: Mapping[str, object], *, together: bool = True
    ) -> list[Verdict]:
        try:
            return self._on_cel_unchecked(rules, record, together)
        except RuntimeError as error:
            # The bindings raise, rather than return an error value, for a record they cannot
            # convert (a lone surrogate in a string): every rule errs on it, as for any other
            # unconvertible record.
            failure = EvaluationFailure(f"the record cannot be converted to CEL values: {error}")
            return [failure] * len(rules)

    def _on_cel_unchecked(
        self, rules: Sequence[CompiledRule], record: Mapping[str, object], together: bool
    ) -> list[Verdict]:
        if together and len(rules) > 1:
            verdicts = self._together(rules).eval(data={_RECORD: record}).plain_value()
            if type(verdicts) is list and all(type(verdict) is bool for verdict in verdicts):
                return verdicts
        # One activation per record: the record is converted to CEL values once for all rules.
        activation = self._env.Activation({_RECORD: record})
        return [_verdict(rule.program.cel.eval(activation)) for rule in rules]  # type: ignore[attr-defined]

    def _translated_together(self, rules: Sequence[CompiledRule]) -> _AllTranslated:
        key = tuple(rule.expression for rule in rules)
        if key in self._translated_lists:
            return self._translated_lists[key]
        if len(self._translated_lists) >= _CACHED_LISTS:
            self._translated_lists.clear()  # only costs translating again; bounds memory
        translated = all(rule.program.translated is not None for rule in rules)  # type: ignore[attr-defined]
        together = translate_all(list(key)) if translated and rules else None
        self._translated_lists[key] = together
        return together

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
