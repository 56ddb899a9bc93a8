from __future__ import annotations

import itertools
from collections.abc import Sequence

from tessera.balancers._candidates import DerivedTable, no_table
from tessera.core.plugins import Endpoint


class RoundRobin:
    """Each candidate in turn, ignoring weights and keys (`round_robin`).

    Concurrency: the position is an `itertools.count`, whose `next` is atomic under the GIL.
    """

    def __init__(self) -> None:
        self._position = itertools.count()
        self._candidates: DerivedTable[None] = DerivedTable(no_table)

    def pick(self, instances: Sequence[Endpoint], key: bytes | None) -> Endpoint:
        """Return the next candidate in order.

        Raises:
            UnavailableError: `instances` is empty.

        """
        candidates, _ = self._candidates.get(instances)
        return candidates[next(self._position) % len(candidates)]
