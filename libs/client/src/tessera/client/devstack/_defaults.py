from collections.abc import Iterable

from tessera.client.devstack._components import Component
from tessera.client.devstack._health import ComponentKind
from tessera.core import SERVICE_PORTS, TesseraSettings

# Services bind TesseraSettings.host, which may be a wildcard; a client reaches them on loopback.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "[::1]"}


def default_components(settings: TesseraSettings, service_names: Iterable[str]) -> list[Component]:
    """List the components of a stack that runs on the settings (when no ``stack.json`` exists).

    etcd is the first of ``settings.etcd_endpoints``, Redis is ``settings.redis_url`` (also where
    worker and beat write their heartbeat), and each service that has design ports in
    ``SERVICE_PORTS`` answers on ``settings.host`` at its design port. Services without design
    ports cannot be located and are left out.

    Args:
        settings: Where etcd, Redis and the services are.
        service_names: Installed services.

    Returns:
        The components, without pids or logs.

    """
    host = _WILDCARDS.get(settings.host, settings.host)
    components = [
        Component(name="etcd", kind=ComponentKind.ETCD, endpoint=settings.etcd_endpoints[0]),
        Component(name="redis", kind=ComponentKind.REDIS, endpoint=settings.redis_url),
    ]
    components += [
        Component(
            name=name, kind=ComponentKind.SERVICE, endpoint=f"{host}:{SERVICE_PORTS[name].port}"
        )
        for name in service_names
        if name in SERVICE_PORTS
    ]
    components += [
        Component(name="worker", kind=ComponentKind.WORKER, endpoint=settings.redis_url),
        Component(name="beat", kind=ComponentKind.BEAT, endpoint=settings.redis_url),
    ]
    return components
