from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence

from tessera.balancers._candidates import DerivedTable
from tessera.core.plugins import Endpoint

#: Slots in one scheduling period, at least one per candidate: weights are rounded to
#: multiples of total/RESOLUTION, so shares are exact to within 0.05 percentage points.
RESOLUTION = 1000


class WeightedRoundRobin:
    """Smooth weighted round robin (`weighted_round_robin`).

    The schedule of one period is built once per candidate set by earliest-deadline-first
    (as gRPC's and Envoy's WRR do): a candidate of weight w is due every 1/w, so picks of heavy
    candidates are spread out instead of bunched (weights 5:1:1 give a a b a c a a, not
    a a a a a b c). A pick is then one index into the schedule.

    Concurrency: the position is an `itertools.count`, atomic under the GIL.
    """

    def __init__(self) -> None:
        self._position = itertools.count()
        self._schedule: DerivedTable[tuple[Endpoint, ...]] = DerivedTable(schedule)

    def pick(self, instances: Sequence[Endpoint], key: bytes | None) -> Endpoint:
        """Return the next candidate of the schedule.

        Raises:
            UnavailableError: `instances` is empty.

        """
        _, slots = self._schedule.get(instances)
        return slots[next(self._position) % len(slots)]


def schedule(candidates: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
    """One period of the smooth schedule for the candidates' weights."""
    total = sum(e.weight for e in candidates)
    units = max(RESOLUTION, len(candidates))
    counts = [max(1, round(e.weight / total * units)) for e in candidates]
    # (deadline, index): the candidate due first goes next; ties go to the earlier candidate.
    due = [(1.0 / count, index) for index, count in enumerate(counts)]
    heapq.heapify(due)
    slots = []
    for _ in range(sum(counts)):
        deadline, index = heapq.heappop(due)
        slots.append(candidates[index])
        heapq.heappush(due, (deadline + 1.0 / counts[index], index))
    return tuple(slots)
