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
    balancer. Callers create one balancer per candidate set they route to (a service, or a
    service and selector), because balancers keep state (round-robin position, request counts,
    hash tables) per candidate set.

    Candidates: callers pass only eligible endpoints (healthy and SERVING, after their panic or
    protection policy); a balancer picks among all it is given. While the candidates do not
    change, callers pass the very same sequence object on every call, so implementations may
    cache tables derived from it keyed on its identity (`candidates is self._cached`) and must
    rebuild when a different object arrives.

    Concurrency: `pick` is synchronous, must not block or do I/O, and may be
    called from several threads at once (the SDK's sync facade): they must never raise or
    return a non-candidate because of a race, and may lose an update of advisory state (a
    round-robin position, a request count) under contention. Under one thread or one event loop
    they must be exact.

    Load: a balancer that needs to see calls finish implements `LoadAwareBalancer` too.

    Distribution: weighted balancers send each endpoint a share of picks within 5 percentage
    points of `weight / sum(weights)` over many picks; unweighted ones give equal shares.
    Hash balancers (ring hash, Maglev) map equal keys to the same endpoint while the candidates
    do not change, and when one endpoint joins or leaves move about the share that endpoint
    owns (the conformance kit bounds it at twice that share plus 5 points).
    """

    def pick(self, instances: Sequence[Endpoint], key: bytes | None) -> Endpoint:
        """Choose the endpoint for one call.

        Args:
            instances: The candidates, in a stable order; never mutated by the balancer.
            key: Affinity key of the call (for example a user id) for hash-based balancers.
                None when the call has no affinity; hash balancers then pick at random, and
                balancers that ignore keys ignore it.

        Returns:
            One element of `instances`.

        Raises:
            UnavailableError: `instances` is empty.

        """
        ...


@runtime_checkable
class LoadAwareBalancer(Balancer, Protocol):
    """A balancer that also wants to know when each call it routed finished (least request).

    Optional: callers check `isinstance(balancer, LoadAwareBalancer)` and, when it is, call
    `complete` once for every endpoint `pick` returned, after the call ended (whatever its
    outcome). Same concurrency rules as `Balancer`.
    """

    def complete(self, endpoint: Endpoint) -> None:
        """Report that a call sent to `endpoint` (returned by `pick`) finished.

        An endpoint no longer among the candidates is ignored.
        """
        ...
