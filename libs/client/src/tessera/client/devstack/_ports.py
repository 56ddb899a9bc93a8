from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import urlsplit

from tessera.core import SERVICE_PORTS, ServicePorts, TesseraSettings, ValidationError
from tessera.core.embedded import free_ports

_MAX_PORT = 65535
_REDIS_PORT = 6379  # what a redis:// URL without a port means


def _default_port(endpoint: str) -> int:
    return int(endpoint.rpartition(":")[2])


def _default_redis_port(url: str) -> int:
    return urlsplit(url).port or _REDIS_PORT


@dataclass(frozen=True, slots=True)
class StackPorts:
    """Every port a development stack listens on.

    Attributes:
        etcd: etcd client port.
        etcd_peer: etcd peer (raft) port; None lets the server pick a free one.
        redis: Redis port.
        services: Per service name, its gRPC and metrics ports.

    """

    etcd: int
    etcd_peer: int | None
    redis: int
    services: Mapping[str, ServicePorts]

    @classmethod
    def plan(
        cls,
        service_names: Iterable[str],
        *,
        offset: int = 0,
        etcd: int | None = None,
        redis: int | None = None,
        settings: TesseraSettings | None = None,
    ) -> "StackPorts":
        """Choose the stack's ports: the design ports, each shifted by ``offset``.

        etcd and Redis default to the ports of the settings defaults (2379 and 6379; etcd's peer
        port is the client port + 1). Known services get their ``SERVICE_PORTS`` entry; a service
        without one (a third-party service) gets free ports. An explicit ``etcd`` or ``redis``
        port is used as given, not shifted.

        Args:
            service_names: The services to run.
            offset: Added to every design port, so several stacks can run side by side.
            etcd: Explicit etcd client port (its peer port is then a free one).
            redis: Explicit Redis port.
            settings: Where the etcd and Redis defaults come from; defaults to a fresh
                ``TesseraSettings()`` (which reads the environment).

        Returns:
            The plan.

        Raises:
            ValidationError: A shifted port falls outside 1..65535.

        """
        defaults = settings if settings is not None else TesseraSettings()
        base_etcd = _default_port(defaults.etcd_endpoints[0])
        if etcd is None:
            etcd_port = _shift(base_etcd, offset)
            etcd_peer = _shift(base_etcd + 1, offset)
        else:
            etcd_port, etcd_peer = etcd, None
        redis_port = (
            _shift(_default_redis_port(defaults.redis_url), offset) if redis is None else redis
        )
        services: dict[str, ServicePorts] = {}
        for name in service_names:
            design = SERVICE_PORTS.get(name)
            if design is None:
                port, metrics_port = free_ports(2)
                services[name] = ServicePorts(port=port, metrics_port=metrics_port)
            else:
                services[name] = ServicePorts(
                    port=_shift(design.port, offset),
                    metrics_port=_shift(design.metrics_port, offset),
                )
        return cls(etcd_port, etcd_peer, redis_port, MappingProxyType(services))


def _shift(port: int, offset: int) -> int:
    shifted = port + offset
    if not 0 < shifted <= _MAX_PORT:
        raise ValidationError.for_field(
            "port_offset", f"moves port {port} to {shifted}, outside 1..{_MAX_PORT}"
        )
    return shifted
