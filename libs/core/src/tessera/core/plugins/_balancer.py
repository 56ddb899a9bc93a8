from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One instance of a service that a balancer may pick.

    Attributes:
        id: Stable identity of the instance, unique within its service; hash-based balancers key
            on it, so it must survive restarts of the instance when the address does.
        address: Where to connect, `host:port`.
        weight: Relative share of traffic, > 0; balancers that ignore weights treat all as equal.
        zone: Locality (availability zone) of the instance; empty when unknown.
        healthy: Last known health. Balancers pick among all the candidates they are given:
            filtering by health and panic thresholds is the caller's policy.

    """

    id: str
    address: str
    weight: float = 1.0
    zone: str = ""
    healthy: bool = True


@runtime_checkable
class Balancer(Protocol):
    """Picks one endpoint of a service for each call. Entry-point group: `tessera.balancers`.

    Factory: the entry point names a class or callable that takes no arguments and returns a new
    balancer. Callers create one balancer per service they route to, because balancers keep state
    (round-robin position, request counts, hash tables) per candidate set.

    Concurrency: `pick` is synchronous, must not block or do I/O, and is called from one event
    loop thread, so implementations need no locking. The candidate sequence changes rarely and is
    passed again on every call; implementations that precompute tables (ring hash, Maglev) may
    cache them keyed on `tuple(instances)` (endpoints are hashable).
    """

    def pick(self, instances: Sequence[Endpoint], key: bytes | None) -> Endpoint:
        """Choose the endpoint for one call.

        Args:
            instances: The candidates, in a stable order; never mutated by the balancer.
            key: Affinity key of the call (for example a user id) for hash-based balancers, which
                must map equal keys to the same endpoint while the candidates do not change.
                None when the call has no affinity; balancers that ignore keys ignore it.

        Returns:
            One element of `instances`.

        Raises:
            UnavailableError: `instances` is empty.

        """
        ...
