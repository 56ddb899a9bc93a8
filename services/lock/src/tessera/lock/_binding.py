from __future__ import annotations

from tessera.core.plugins import LOCK_BACKENDS, LockBackend, load_plugins
from tessera.core.server import ServiceBinding
from tessera.lock._servicer import LockServicer
from tessera.lock._settings import LockSettings
from tessera.proto.lock.v1 import lock_pb2_grpc

#: Full proto name of the service.
LOCK_SERVICE = "tessera.lock.v1.Lock"


def load_backend(settings: LockSettings) -> LockBackend:
    """Build the `tessera.lock_backends` plugin that `settings.lock_backend` names.

    Raises:
        PluginError: The plugin is not installed, failed to load, or its factory failed.

    """
    plugin = load_plugins(LOCK_BACKENDS).get(settings.lock_backend)
    return plugin.create(settings)


def lock_binding(settings: LockSettings, backend: LockBackend | None = None) -> ServiceBinding:
    """Return the binding that serves the lock service on `backend`.

    Args:
        settings: The service's settings; `lock_backend` chooses the backend when none is given.
        backend: A backend built by the caller (tests, embedding); the caller closes it.

    Raises:
        PluginError: From `load_backend`.

    """
    servicer = LockServicer(backend if backend is not None else load_backend(settings))
    return ServiceBinding(LOCK_SERVICE, servicer, lock_pb2_grpc.add_LockServicer_to_server)
