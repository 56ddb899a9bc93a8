from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import urlsplit

from tessera.core import SERVICE_PORTS, ServicePorts, TesseraSettings, ValidationError
from tessera.core.embedded import free_ports

_MAX_PORT = 65535
_REDIS_PORT = 6379  # what a redis:// URL without a port means

#: Members of the etcd cluster that ``tessera dev up --cluster`` runs, as deploy/docker-compose.yml.
CLUSTER_ETCD_MEMBERS = 3
#: Replicas per service under ``--cluster``, as deploy/docker-compose.yml runs them; services not
#: named here run once. A test holds the two files to the same topology.
CLUSTER_REPLICAS: Mapping[str, int] = MappingProxyType({"registry": 2, "lock": 2, "ratelimit": 2})
# Replica n (from 0) of a service listens on its design ports + n * this, e.g. 50051 and 50151.
_REPLICA_PORT_STEP = 100


def _default_port(endpoint: str) -> int:
    return int(endpoint.rpartition(":")[2])


def _default_redis_port(url: str) -> int:
    return urlsplit(url).port or _REDIS_PORT


@dataclass(frozen=True, slots=True)
class ServiceInstance:
    """One process of a service in the stack.

    Attributes:
        name: Component name: the service name, or ``<service>-<n>`` (from 1) for a replica.
        service: The service it runs (a key of ``discover_services()``).
        ports: Its gRPC and metrics ports.

    """

    name: str
    service: str
    ports: ServicePorts


@dataclass(frozen=True, slots=True)
class StackPorts:
    """Every port a development stack listens on.

    Attributes:
        etcd: etcd client port (of the first member in a cluster).
        etcd_peer: etcd peer (raft) port; None lets the server pick a free one.
        redis: Redis port.
        services: Per service name, its gRPC and metrics ports (of its first replica).
        etcd_cluster: ``(client, peer)`` ports of each etcd member when etcd runs as a cluster;
            empty runs one etcd on ``etcd`` and ``etcd_peer``.
        replicas: Per service, the ports of each of its replicas when it runs more than one.

    """

    etcd: int
    etcd_peer: int | None
    redis: int
    services: Mapping[str, ServicePorts]
    etcd_cluster: tuple[tuple[int, int], ...] = ()
    replicas: Mapping[str, tuple[ServicePorts, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def instances(self) -> list[ServiceInstance]:
        """Every service process of the stack, by service name order, replicas in order."""
        found = []
        for service, first in self.services.items():
            replicas = self.replicas.get(service, (first,))
            if len(replicas) == 1:
                found.append(ServiceInstance(service, service, first))
            else:
                found += [
                    ServiceInstance(f"{service}-{index}", service, ports)
                    for index, ports in enumerate(replicas, start=1)
                ]
        return found

    def all_ports(self) -> dict[str, int]:
        """Every port the stack binds, by what binds it (for the check that they are free)."""
        wanted = {"redis": self.redis}
        if self.etcd_cluster:
            for index, (client, peer) in enumerate(self.etcd_cluster):
                wanted[f"etcd-{index}"], wanted[f"etcd-{index} peer"] = client, peer
        else:
            wanted["etcd"] = self.etcd
            if self.etcd_peer is not None:
                wanted["etcd peer"] = self.etcd_peer
        for instance in self.instances():
            wanted[instance.name] = instance.ports.port
            wanted[f"{instance.name} metrics"] = instance.ports.metrics_port
        return wanted

    @classmethod
    def plan(
        cls,
        service_names: Iterable[str],
        *,
        offset: int = 0,
        etcd: int | None = None,
        redis: int | None = None,
        settings: TesseraSettings | None = None,
        cluster: bool = False,
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
            cluster: Plan the topology of deploy/docker-compose.yml: ``CLUSTER_ETCD_MEMBERS``
                etcd members (member n on the etcd client port + 2n, its peer port one above)
                and ``CLUSTER_REPLICAS`` replicas of those services (replica n on the design
                ports + 100n; free ports for a service without design ports).

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
        replicas: dict[str, tuple[ServicePorts, ...]] = {}
        for name in service_names:
            count = CLUSTER_REPLICAS.get(name, 1) if cluster else 1
            replicas[name] = tuple(_service_ports(name, index, offset) for index in range(count))
            services[name] = replicas[name][0]
        if not cluster:
            return cls(etcd_port, etcd_peer, redis_port, MappingProxyType(services))
        members = tuple(
            (_shift(etcd_port, 2 * index), _shift(etcd_port, 2 * index + 1))
            for index in range(CLUSTER_ETCD_MEMBERS)
        )
        return cls(
            etcd_port,
            members[0][1],
            redis_port,
            MappingProxyType(services),
            etcd_cluster=members,
            replicas=MappingProxyType({k: v for k, v in replicas.items() if len(v) > 1}),
        )


def _service_ports(name: str, replica: int, offset: int) -> ServicePorts:
    design = SERVICE_PORTS.get(name)
    if design is None:
        port, metrics_port = free_ports(2)
        return ServicePorts(port=port, metrics_port=metrics_port)
    step = replica * _REPLICA_PORT_STEP
    return ServicePorts(
        port=_shift(design.port + step, offset),
        metrics_port=_shift(design.metrics_port + step, offset),
    )


def _shift(port: int, offset: int) -> int:
    shifted = port + offset
    if not 0 < shifted <= _MAX_PORT:
        raise ValidationError.for_field(
            "port_offset", f"moves port {port} to {shifted}, outside 1..{_MAX_PORT}"
        )
    return shifted
