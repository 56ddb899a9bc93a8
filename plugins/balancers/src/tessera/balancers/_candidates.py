from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from tessera.core import UnavailableError
from tessera.core.plugins import Endpoint

T = TypeVar("T")

#: Candidate sets whose tables are kept besides the current one.
RECENT = 8


class DerivedTable(Generic[T]):
    """A table derived from a candidate set, rebuilt only when the candidates change.

    The `Balancer` contract lets callers pass the same sequence object while the candidates do
    not change: that is a pointer comparison. A different object with contents seen recently
    (the last `RECENT` sets, for callers alternating between a few selections) costs a tuple
    hash; only new contents pay for `build`.

    Concurrency: the source, its contents and the table are swapped as one tuple, so a thread
    never sees a table built for other candidates than the ones it is handed with.

    Args:
        build: Builds the table from a non-empty tuple of candidates.

    """

    def __init__(self, build: Callable[[tuple[Endpoint, ...]], T]) -> None:
        self._build = build
        self._state: tuple[object, tuple[Endpoint, ...], T] | None = None
        self._recent: dict[tuple[Endpoint, ...], T] = {}

    def get(self, candidates: Sequence[Endpoint]) -> tuple[tuple[Endpoint, ...], T]:
        """Return the candidates as a tuple and their table.

        Raises:
            UnavailableError: `candidates` is empty.

        """
        state = self._state
        if state is not None and state[0] is candidates:
            return state[1], state[2]
        contents = tuple(candidates)
        if not contents:
            raise UnavailableError("no endpoint to pick from")
        table = self._recent.get(contents)
        if table is None:
            table = self._build(contents)
            recent = dict(self._recent)  # replaced, never mutated: readers in other threads
            if len(recent) >= RECENT:
                del recent[next(iter(recent))]
            recent[contents] = table
            self._recent = recent
        self._state = (candidates, contents, table)
        return contents, table


def no_table(candidates: tuple[Endpoint, ...]) -> None:
    """Build nothing: for balancers that only need the candidates as a tuple."""
    return None


def cumulative_weights(candidates: tuple[Endpoint, ...]) -> tuple[list[float], float]:
    """Build the running sums of the weights and their total, for weighted random draws."""
    cumulative = list(itertools.accumulate(e.weight for e in candidates))
    return cumulative, cumulative[-1]
