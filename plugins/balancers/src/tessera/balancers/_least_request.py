from __future__ import annotations

import bisect
import random
from collections.abc import Sequence

from tessera.balancers._candidates import DerivedTable, cumulative_weights
from tessera.core.plugins import Endpoint


class LeastRequest:
    """Power of two choices by calls in flight per unit of weight (`least_request`).

    Two candidates are drawn at random, each with probability proportional to its weight, and
    the one with fewer calls in flight relative to its weight wins; a tie goes to the first
    draw (Envoy's least request). With no calls in flight picks therefore follow the weights;
    under load they steer away from slow endpoints. Calls in flight are counted from `pick` to
    `complete`, so callers must call `complete` (this is a `LoadAwareBalancer`).

    Concurrency: counts are advisory; a lost update between threads skews one comparison.
    """

    def __init__(self) -> None:
        self._cumulative: DerivedTable[tuple[list[float], float]] = DerivedTable(cumulative_weights)
        self._in_flight: dict[str, int] = {}
        self._random = random.random

    def pick(self, instances: Sequence[Endpoint], key: bytes | None) -> Endpoint:
        """Return the less loaded of two weighted random draws, and count one call for it.

        Raises:
            UnavailableError: `instances` is empty.

        """
        candidates, (cumulative, total) = self._cumulative.get(instances)
        last = len(candidates) - 1
        first = candidates[min(bisect.bisect_right(cumulative, self._random() * total), last)]
        if last:
            second = candidates[min(bisect.bisect_right(cumulative, self._random() * total), last)]
            in_flight = self._in_flight
            if in_flight.get(second.id, 0) * first.weight < in_flight.get(first.id, 0) * (
                second.weight
            ):
                first = second
        self._in_flight[first.id] = self._in_flight.get(first.id, 0) + 1
        return first

    def complete(self, endpoint: Endpoint) -> None:
        """Count one call to `endpoint` as finished."""
        remaining = self._in_flight.get(endpoint.id, 0) - 1
        if remaining > 0:
            self._in_flight[endpoint.id] = remaining
        else:
            self._in_flight.pop(endpoint.id, None)
