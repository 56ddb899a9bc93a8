from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tessera.core.plugins import Endpoint
from tessera.proto.registry.v1 import registry_pb2

_SERVING = registry_pb2.SERVING_STATUS_SERVING


@dataclass(frozen=True, slots=True)
class ServedSet:
    """The instances of a service that may take new traffic, as clients and Resolve see them.

    Attributes:
        instances: The eligible instances, in id order.
        protected: True when the healthy share fell below the protection threshold, so
            unhealthy SERVING instances are served too (the last healthy set, Nacos' protect
            threshold, Eureka's self-preservation).

    """

    instances: tuple[registry_pb2.Instance, ...]
    protected: bool


def served_set(
    instances: Iterable[registry_pb2.Instance], *, maintenance: bool, protect_threshold: float
) -> ServedSet:
    """Choose the instances that take traffic.

    An instance is eligible when it is SERVING and healthy and its service is not in maintenance.
    When fewer than `protect_threshold` of the SERVING instances are healthy, every SERVING
    instance is eligible instead and the set is flagged protected: serving some stale instances
    beats piling every call onto the few left, or serving none.

    Args:
        instances: Every instance of one service (any status and health).
        maintenance: The service-wide maintenance switch; when on, nothing is eligible.
        protect_threshold: 0 to 1; 0 turns protection off.

    Returns:
        The eligible instances, sorted by id, and whether protection is on.

    """
    if maintenance:
        return ServedSet((), protected=False)
    serving = sorted((i for i in instances if i.status == _SERVING), key=lambda i: i.id)
    healthy = tuple(i for i in serving if i.healthy)
    if serving and protect_threshold > 0 and len(healthy) < protect_threshold * len(serving):
        return ServedSet(tuple(serving), protected=True)
    return ServedSet(healthy, protected=False)


def to_endpoint(instance: registry_pb2.Instance) -> Endpoint:
    """Describe an instance to a balancer (`id`, `host:port`, weight, zone, health)."""
    host = f"[{instance.host}]" if ":" in instance.host else instance.host
    return Endpoint(
        id=instance.id,
        address=f"{host}:{instance.port}",
        weight=instance.weight or 1.0,
        zone=instance.zone,
        healthy=instance.healthy,
    )
