"""A static upper bound on the cost of evaluating a CEL expression.

The CEL runtime bindings expose no evaluation budget, so the bound is computed from the source
before compiling. Without comprehensions (`all`, `exists`, `exists_one`, `map`, `filter`) a CEL
expression runs in time linear in its size and in the record's size (CEL has no loops, no
recursion and RE2 regular expressions run in linear time). Every comprehension multiplies the
cost of its body by the length of the list it ranges over, which is assumed to be at most
`CostLimit.max_list_length`. The estimate charges each token `max_list_length ** depth`, where
depth counts the comprehensions around it, plus one for a reference to `record` inside a
comprehension (the body may walk or copy another list of the record, which is quadratic).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_TOKEN = re.compile(
    r"""
      (?P<string>[rRbB]{0,2}("{3}[\s\S]*?"{3}|'{3}[\s\S]*?'{3}|"(\\.|[^"\\])*"|'(\\.|[^'\\])*'))
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<number>\d[\w.]*)
    | (?P<open>[(\[{])
    | (?P<close>[)\]}])
    | (?P<space>\s+)
    | (?P<other>.)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class CostLimit:
    """The budget a CEL rule must fit in.

    Attributes:
        max_cost: Largest estimated cost accepted (roughly, operations per record).
        max_list_length: Length assumed for any list a comprehension ranges over.
        max_expression_chars: Longest expression accepted.

    """

    max_cost: int = 1_000_000
    max_list_length: int = 10_000
    max_expression_chars: int = 4_096


def estimate_cost(expression: str, limit: CostLimit) -> int:
    """Estimate the worst-case cost of evaluating `expression` on one record.

    Args:
        expression: CEL source (need not be valid; unbalanced brackets are tolerated).
        limit: Supplies the assumed list length.

    Returns:
        The estimated number of operations.

    """
    cost = 0
    depth = 0
    # One entry per open bracket: whether it opened a comprehension's argument list.
    brackets: list[bool] = []
    previous: list[str] = []  # the last two significant tokens
    for match in _TOKEN.finditer(expression):
        kind, text = match.lastgroup, match.group()
        if kind == "space":
            continue
        if kind == "open":
            macro = text == "(" and previous[-2:-1] == ["."] and previous[-1:][0] in _MACROS
            brackets.append(macro)
            depth += macro
        elif kind == "close" and brackets:
            depth -= brackets.pop()
        extra = 1 if kind == "name" and text == "record" and depth else 0
        cost += limit.max_list_length ** (depth + extra)
        previous = [*previous[-1:], text]
    return cost
