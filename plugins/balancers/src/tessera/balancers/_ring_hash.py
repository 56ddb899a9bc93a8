from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass

from tessera.balancers._candidates import DerivedTable
from tessera.balancers._hashing import hash64
from tessera.core.plugins import Endpoint

#: Points on the ring, at least (Envoy's minimum_ring_size); each candidate gets a share of
#: them proportional to its weight, and at least one.
MIN_RING_SIZE = 1024
#: Points per candidate, at least, so shares stay even with many candidates.
POINTS_PER_CANDIDATE = 100


@dataclass(frozen=True, slots=True)
class _Ring:
    hashes: list[int]
    owners: list[Endpoint]


class RingHash:
    """Consistent hashing on a ring of weighted virtual nodes (`ring_hash`, Ketama style).

    A key maps to the first point clockwise of its XXH3 hash. Points are placed by hashing
    `"<endpoint id>_<n>"`, so they depend on ids only, and a joining or leaving candidate
    moves only the keys of the points it takes or gives up. Without a key the pick is random.

    Concurrency: the ring is immutable once built.
    """

    def __init__(self) -> None:
        self._ring: DerivedTable[_Ring] = DerivedTable(_build)
        self._random = random.random

    def pick(self, instances: Sequence[Endpoint], key: bytes | None) -> Endpoint:
        """Return the owner of the key's point on the ring.

        Raises:
            UnavailableError: `instances` is empty.

        """
        candidates, ring = self._ring.get(instances)
        if key is None:
            return candidates[int(self._random() * len(candidates))]
        index = bisect.bisect(ring.hashes, hash64(key))
        return ring.owners[index if index < len(ring.owners) else 0]


def _build(candidates: tuple[Endpoint, ...]) -> _Ring:
    total = sum(e.weight for e in candidates)
    size = max(MIN_RING_SIZE, POINTS_PER_CANDIDATE * len(candidates))
    points: list[tuple[int, str]] = []
    for endpoint in candidates:
        share = max(1, round(endpoint.weight / total * size))
        prefix = endpoint.id.encode() + b"_"
        points.extend((hash64(prefix + str(n).encode()), endpoint.id) for n in range(share))
    points.sort()
    by_id = {e.id: e for e in candidates}
    return _Ring([h for h, _ in points], [by_id[i] for _, i in points])
