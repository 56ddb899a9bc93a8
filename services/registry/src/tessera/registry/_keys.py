"""Where the registry keeps its records in etcd (see docs/keyspace.md)."""

from __future__ import annotations

from dataclasses import dataclass

#: Root of every registry key.
ROOT = "/tessera/registry/"
#: One key per instance: `<INSTANCES><namespace>/<service>/<id>`.
INSTANCES = ROOT + "instances/"
#: One key per configured service: `<SERVICES><namespace>/<service>`.
SERVICES = ROOT + "services/"
#: The elected leader among registry replicas: its owner id, on its process lease.
LEADER = ROOT + "leader"


@dataclass(frozen=True, slots=True, order=True)
class ServiceName:
    """A service within its namespace."""

    namespace: str
    service: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.service}"


def instance_key(name: ServiceName, instance_id: str) -> bytes:
    """Return the key of one instance (names are validated to be single path segments)."""
    return f"{INSTANCES}{name.namespace}/{name.service}/{instance_id}".encode()


def service_key(name: ServiceName) -> bytes:
    """Return the key of one service's configuration."""
    return f"{SERVICES}{name.namespace}/{name.service}".encode()


def parse_key(key: bytes) -> tuple[str, ServiceName, str] | None:
    """Split a registry key into its kind, service and instance id ("" for a service key).

    Returns:
        `("instances", name, id)`, `("services", name, "")`, or None for a key of no known kind.

    """
    text = key.decode(errors="replace")
    if text.startswith(INSTANCES):
        parts = text[len(INSTANCES) :].split("/")
        if len(parts) == 3:
            return "instances", ServiceName(parts[0], parts[1]), parts[2]
    elif text.startswith(SERVICES):
        parts = text[len(SERVICES) :].split("/")
        if len(parts) == 2:
            return "services", ServiceName(parts[0], parts[1]), ""
    return None
