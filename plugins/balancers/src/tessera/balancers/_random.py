from __future__ import annotations

import bisect
import random
from collections.abc import Sequence

from tessera.balancers._candidates import DerivedTable, cumulative_weights
from tessera.core.plugins import Endpoint


class WeightedRandom:
    """A random candidate, each with probability proportional to its weight (`random`).

    Keys are ignored. Concurrency: stateless apart from the cached cumulative weights.
    """

    def __init__(self) -> None:
        self._table: DerivedTable[tuple[list[float], float]] = DerivedTable(cumulative_weights)
        self._random = random.random

    def pick(self, instances: Sequence[Endpoint], key: bytes | None) -> Endpoint:
        """Return a random candidate, weighted.

        Raises:
            UnavailableError: `instances` is empty.

        """
        candidates, (cumulative, total) = self._table.get(instances)
        index = bisect.bisect_right(cumulative, self._random() * total)
        return candidates[min(index, len(candidates) - 1)]
