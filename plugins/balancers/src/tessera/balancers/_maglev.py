from __future__ import annotations

import random
from collections.abc import Sequence

from tessera.balancers._candidates import DerivedTable
from tessera.balancers._hashing import hash64
from tessera.core.plugins import Endpoint

#: Lookup table size, a prime (Envoy's default): keys spread within ~1% for up to ~650
#: candidates.
TABLE_SIZE = 65537
_OFFSET_SEED = 0x6D61676C
_SKIP_SEED = 0x65763031


class Maglev:
    """Maglev consistent hashing (`maglev`, Eisenbud et al., NSDI 2016; weighted as in Envoy).

    Each candidate fills the lookup table along its own permutation (offset and skip hashed
    from its id); heavier candidates take turns more often. A key's pick is one index into
    the table: faster to build and to look up than a ring, while moving somewhat more keys
    when a candidate joins or leaves. Without a key the pick is random.

    Concurrency: the table is immutable once built.
    """

    def __init__(self) -> None:
        self._table: DerivedTable[list[Endpoint]] = DerivedTable(build_table)
        self._random = random.random

    def pick(self, instances: Sequence[Endpoint], key: bytes | None) -> Endpoint:
        """Return the table entry of the key's hash.

        Raises:
            UnavailableError: `instances` is empty.

        """
        candidates, table = self._table.get(instances)
        if key is None:
            return candidates[int(self._random() * len(candidates))]
        return table[hash64(key) % TABLE_SIZE]


def build_table(candidates: tuple[Endpoint, ...], size: int = TABLE_SIZE) -> list[Endpoint]:
    """Fill a Maglev lookup table of `size` (a prime) entries."""
    # Order by id so the table depends on the set of candidates, not the order they came in.
    ordered = sorted(candidates, key=lambda e: e.id)
    offsets = [hash64(e.id.encode(), _OFFSET_SEED) % size for e in ordered]
    skips = [hash64(e.id.encode(), _SKIP_SEED) % (size - 1) + 1 for e in ordered]
    heaviest = max(e.weight for e in ordered)
    shares = [e.weight / heaviest for e in ordered]
    taken = [0] * len(ordered)
    next_probe = [0] * len(ordered)
    table: list[Endpoint | None] = [None] * size
    filled = 0
    turn = 0
    while True:
        turn += 1
        for index, endpoint in enumerate(ordered):
            # A candidate of relative weight s takes an entry in a turn only while its entries
            # stay within s * turn: weights become shares of the table.
            if taken[index] >= shares[index] * turn:
                continue
            offset, skip, probe = offsets[index], skips[index], next_probe[index]
            slot = (offset + probe * skip) % size
            while table[slot] is not None:
                probe += 1
                slot = (offset + probe * skip) % size
            table[slot] = endpoint
            next_probe[index] = probe + 1
            taken[index] += 1
            filled += 1
            if filled == size:
                return [entry for entry in table if entry is not None]
