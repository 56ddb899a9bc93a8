from collections.abc import Mapping
from importlib.metadata import entry_points
from types import MappingProxyType

#: Entry-point group in which each service names the module that ``python -m`` runs.
SERVICES_GROUP = "tessera.services"


def discover_services() -> Mapping[str, str]:
    """Find the installed services.

    Each service distribution declares ``name = "module"`` in the ``tessera.services`` group
    (for example ``registry = "tessera.registry"``); the module runs as ``python -m module``.
    Nothing is imported.

    Returns:
        Module per service name, sorted by name. When two distributions declare one name, the
        first found wins.

    """
    found: dict[str, str] = {}
    for entry_point in entry_points(group=SERVICES_GROUP):
        found.setdefault(entry_point.name, entry_point.module)
    return MappingProxyType(dict(sorted(found.items())))
