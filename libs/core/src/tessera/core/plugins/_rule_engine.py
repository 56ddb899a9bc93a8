from __future__ import annotations

from collections.abc import Mapping
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


@runtime_checkable
class RuleEngine(Protocol):
    """Compiles and evaluates data rules. Entry-point group: `tessera.rule_engines`.

    Factory: the entry point names a class or callable that takes no arguments and returns an
    engine.

    Concurrency: both methods are synchronous and CPU-bound; callers run them in a worker thread or
    process pool, so they must be thread-safe: the engine holds no per-call state and compiled
    rules are immutable.
    """

    def compile(self, expression: str) -> CompiledRule:
        """Check and compile a rule expression once, for many evaluations.

        Args:
            expression: The rule in the engine's language.

        Returns:
            The compiled rule.

        Raises:
            ValidationError: The expression is not valid in the engine's language; the violation
                names the field `expression` and says what is wrong.

        """
        ...

    def evaluate(self, rule: CompiledRule, record: Mapping[str, object]) -> bool:
        """Decide whether one record satisfies a rule.

        Args:
            rule: A rule compiled by this engine.
            record: The data, as JSON-like values (str, int, float, bool, None, lists, mappings).

        Returns:
            True if the record satisfies the rule.

        Raises:
            ValidationError: The rule cannot be evaluated on this record (a field it needs is
                missing or has the wrong type).

        """
        ...
