from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule expression checked and compiled by one rule engine.

    Attributes:
        expression: The source text the rule was compiled from.
        program: The engine's compiled form, opaque to everyone but the engine that made it; it is
            left out of equality and hashing.

    """

    expression: str
    program: object = field(compare=False)


@dataclass(frozen=True, slots=True)
class EvaluationFailure:
    """The verdict of a rule that could not be evaluated on a record.

    A failure is a value, not an exception, so that one bad record never stops the evaluation of
    a batch and each rule's reason reaches the caller.

    Attributes:
        reason: Why, in the engine's words (`no such key: 'age'`, `divide by zero`).

    """

    reason: str


#: The verdict on one rule: True (satisfied), False (violated) or why it could not be decided.
Verdict = bool | EvaluationFailure


@runtime_checkable
class RuleEngine(Protocol):
    """Compiles and evaluates data rules. Entry-point group: `tessera.rule_engines`.

    Factory: the entry point names a class or callable that takes no arguments and returns an
    engine.

    Bounded cost: `compile` refuses any expression whose evaluation the engine cannot bound, so
    that no rule runs unbounded on a record within the service's record size limit.

    Concurrency: both methods are synchronous and CPU-bound; callers may run them in worker
    threads, so they must be thread-safe: the engine holds no per-call state and compiled rules
    are immutable.
    """

    def compile(self, expression: str) -> CompiledRule:
        """Check and compile a rule expression once, for many evaluations.

        Args:
            expression: The rule in the engine's language.

        Returns:
            The compiled rule.

        Raises:
            ValidationError: The expression is not valid in the engine's language or is over the
                engine's cost limit; the violation names the field `expression` and says what is
                wrong and where (line and column when the language has them).

        """
        ...

    def evaluate(
        self, rules: Sequence[CompiledRule], record: Mapping[str, object]
    ) -> list[Verdict]:
        """Decide, for one record, whether it satisfies each of several rules.

        Taking every rule of a rule set at once lets an engine convert the record once.

        Args:
            rules: Rules compiled by this engine.
            record: The data, as JSON-like values (str, int, float, bool, None, lists, mappings).

        Returns:
            One verdict per rule, in order: True if satisfied, False if violated, an
            `EvaluationFailure` when the rule cannot be evaluated on this record (a field it
            needs is missing or has the wrong type). Never raises for a bad record.

        """
        ...

    def evaluate_batch(
        self, rules: Sequence[CompiledRule], records: Sequence[Mapping[str, object]]
    ) -> list[Sequence[Verdict]]:
        """Decide, for each of many records, whether it satisfies each rule.

        The same verdicts as `evaluate` on each record in turn; one call for a whole batch lets
        an engine keep per-call costs (lookups, dispatch) out of the per-record loop.

        Args:
            rules: Rules compiled by this engine.
            records: The data, as for `evaluate`.

        Returns:
            One sequence of verdicts per record, in record order, each as `evaluate` returns.
            Never raises for a bad record.

        """
        ...
