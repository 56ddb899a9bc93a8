"""The local development stack behind ``tessera dev up`` and ``tessera status``.

:class:`DevStack` runs etcd and Redis (through :mod:`tessera.core.embedded`), every installed
service (entry-point group ``tessera.services``), a Celery worker and beat as child processes,
and judges their health; :func:`check_components` probes a stack that another process runs,
found through its :class:`StackManifest` (``<data-dir>/stack.json``). Rendering is the CLI's.

Errors (all :class:`tessera.core.TesseraError`)::

    FailedPreconditionError
     +-- StackRunningError      the data directory or a port is already in use
     +-- StackManifestError     stack.json exists but cannot be read
"""

from tessera.client.devstack._check import check_components, probe_component
from tessera.client.devstack._components import Component
from tessera.client.devstack._defaults import default_components
from tessera.client.devstack._health import ComponentKind, ComponentStatus, Health
from tessera.client.devstack._manifest import MANIFEST_NAME, StackManifest, StackManifestError
from tessera.client.devstack._ports import (
    CLUSTER_ETCD_MEMBERS,
    CLUSTER_REPLICAS,
    ServiceInstance,
    StackPorts,
)
from tessera.client.devstack._probes import ProbeResult
from tessera.client.devstack._services import SERVICES_GROUP, discover_services
from tessera.client.devstack._stack import DevStack, DevStackConfig, StackRunningError

__all__ = [
    "CLUSTER_ETCD_MEMBERS",
    "CLUSTER_REPLICAS",
    "MANIFEST_NAME",
    "SERVICES_GROUP",
    "Component",
    "ComponentKind",
    "ComponentStatus",
    "DevStack",
    "DevStackConfig",
    "Health",
    "ProbeResult",
    "ServiceInstance",
    "StackManifest",
    "StackManifestError",
    "StackPorts",
    "StackRunningError",
    "check_components",
    "default_components",
    "discover_services",
    "probe_component",
]
