from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from tessera.core import ValidationError

_LABEL = r"[A-Za-z0-9][A-Za-z0-9_.\-/]*"
_VALUE = r"[A-Za-z0-9_.\-]*"
_TERM = re.compile(
    rf"""\s*(?:
        (?P<neg>!)\s*(?P<absent>{_LABEL})
      | (?P<setkey>{_LABEL})\s+(?P<setop>in|notin)\s*\((?P<values>[^()]*)\)
      | (?P<key>{_LABEL})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})
      | (?P<present>{_LABEL})
    )\s*(?:,|$)""",
    re.VERBOSE,
)
_SINGLE_VALUE = re.compile(rf"^{_VALUE}$")


@dataclass(frozen=True, slots=True)
class Requirement:
    """One term of a selector: `key` compared with `values` by `op`."""

    key: str
    op: str  # "in", "notin", "exists", "absent"
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a label set satisfies this term."""
        value = labels.get(self.key)
        if self.op == "exists":
            return value is not None
        if self.op == "absent":
            return value is None
        if self.op == "in":
            return value is not None and value in self.values
        return value is None or value not in self.values


@dataclass(frozen=True, slots=True)
class Selector:
    """A Kubernetes-style label selector: every requirement must hold.

    Syntax: comma-separated terms, each `k=v` (or `k==v`), `k!=v`, `k in (v1,v2)`,
    `k notin (v1,v2)`, `k` (label present) or `!k` (label absent). The empty selector matches
    everything.
    """

    requirements: tuple[Requirement, ...]

    @classmethod
    def parse(cls, text: str, *, field: str = "selector") -> Selector:
        """Parse a selector.

        Raises:
            ValidationError: The text is not a selector; the violation names `field`.

        """
        requirements: list[Requirement] = []
        position = 0
        text = text.strip()
        while position < len(text):
            match = _TERM.match(text, position)
            if match is None or match.end() == position:
                raise ValidationError.for_field(
                    field, f"malformed label selector at character {position}: {text!r}"
                )
            requirements.append(_requirement(match, field))
            position = match.end()
            if text[match.end() - 1 : match.end()] == "," and position == len(text):
                raise ValidationError.for_field(field, "label selector ends with a comma")
        return cls(tuple(requirements))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a label set satisfies every requirement."""
        return all(requirement.matches(labels) for requirement in self.requirements)


def _requirement(match: re.Match[str], field: str) -> Requirement:
    if match["absent"]:
        return Requirement(match["absent"], "absent", frozenset())
    if match["present"]:
        return Requirement(match["present"], "exists", frozenset())
    if match["setkey"]:
        values = [value.strip() for value in match["values"].split(",")]
        if not all(values) or not all(_SINGLE_VALUE.match(value) for value in values):
            raise ValidationError.for_field(field, f"bad value list in {match.group(0).strip()!r}")
        op = match["setop"]
        return Requirement(match["setkey"], op, frozenset(values))
    op = "notin" if match["op"] == "!=" else "in"
    return Requirement(match["key"], op, frozenset({match["value"]}))
