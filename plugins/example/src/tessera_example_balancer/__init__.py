"""An example Tessera balancer plugin: weighted rendezvous hashing.

Rendezvous (highest random weight) hashing scores every candidate for a key and picks the
highest score, so a key moves only when its best candidate leaves or a better one joins: the
minimum possible disruption, at O(candidates) per pick. Weighted as in Schindelhauer and
Schomaker's logarithmic method: score = -weight / ln(u), with u the key-candidate hash in (0, 1).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence

from tessera.core import UnavailableError
from tessera.core.plugins import Endpoint

__all__ = ["RendezvousBalancer"]

_SCALE = float(2**64)


class RendezvousBalancer:
    """Weighted rendezvous hashing; a random weighted pick when the call has no key.

    Satisfies `tessera.core.plugins.Balancer`. Stateless, so safe from any thread.
    """

    def pick(self, instances: Sequence[Endpoint], key: bytes | None) -> Endpoint:
        """Return the candidate with the highest score for `key`.

        Raises:
            UnavailableError: `instances` is empty.

        """
        if not instances:
            raise UnavailableError("no endpoint to pick from")
        if key is None:
            return random.choices(instances, weights=[e.weight for e in instances])[0]
        return max(instances, key=lambda endpoint: _score(key, endpoint))


def _score(key: bytes, endpoint: Endpoint) -> float:
    digest = hashlib.blake2b(key + b"\0" + endpoint.id.encode(), digest_size=8).digest()
    unit = (int.from_bytes(digest, "big") + 0.5) / _SCALE  # in (0, 1), never 0 or 1
    return -endpoint.weight / math.log(unit)
