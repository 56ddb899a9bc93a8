"""The Tessera registry service: who is alive and where.

Instances register (`Register`), keep alive over one stream per client (`KeepAlive`), drain
(`SetStatus`), and are discovered (`List`, `Watch`, `Resolve`). Records live in etcd under
`/tessera/registry/`; every replica follows them in an in-memory `RegistryView`; liveness is
tracked in memory (`Liveness`) behind one etcd lease per process. See docs/registry.md.
"""

from tessera.registry._handlers import REGISTRY_SERVICE
from tessera.registry._keys import INSTANCES, LEADER, ROOT, SERVICES, ServiceName
from tessera.registry._selector import Selector
from tessera.registry._service import RegistryService
from tessera.registry._servicer import DEFAULT_BALANCER, RegistryServicer
from tessera.registry._settings import RegistrySettings

__all__ = [
    "DEFAULT_BALANCER",
    "INSTANCES",
    "LEADER",
    "REGISTRY_SERVICE",
    "ROOT",
    "SERVICES",
    "RegistryService",
    "RegistryServicer",
    "RegistrySettings",
    "Selector",
    "ServiceName",
]
