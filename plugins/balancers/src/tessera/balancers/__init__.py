"""Tessera's built-in load balancers, registered in the `tessera.balancers` entry-point group.

| name                   | class                | weights | key affinity |
|------------------------|----------------------|---------|--------------|
| `round_robin`          | `RoundRobin`         | no      | no           |
| `random`               | `WeightedRandom`     | yes     | no           |
| `weighted_round_robin` | `WeightedRoundRobin` | yes     | no           |
| `least_request`        | `LeastRequest`       | yes     | no           |
| `ring_hash`            | `RingHash`           | yes     | yes          |
| `maglev`               | `Maglev`             | yes     | yes          |

Each follows the `tessera.core.plugins.Balancer` contract and passes the conformance kit in
`tessera.testing.conformance.balancers`.
"""

from tessera.balancers._least_request import LeastRequest
from tessera.balancers._maglev import TABLE_SIZE, Maglev
from tessera.balancers._random import WeightedRandom
from tessera.balancers._ring_hash import RingHash
from tessera.balancers._round_robin import RoundRobin
from tessera.balancers._weighted_round_robin import WeightedRoundRobin

__all__ = [
    "TABLE_SIZE",
    "LeastRequest",
    "Maglev",
    "RingHash",
    "RoundRobin",
    "WeightedRandom",
    "WeightedRoundRobin",
]
