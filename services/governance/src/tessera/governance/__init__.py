"""The governance service: contracts, standards, the entity model, rule sets and scans.

Run it with `python -m tessera.governance`; scans run in Celery workers of queue `governance`
(`tessera-worker -Q governance`, tasks in `tessera.governance.jobs`). Embed it with
`governance_binding(etcd, settings)`. The compatibility logic is pure and usable on its own:
`check_compatibility`, `reader_incompatibilities`.
"""

from tessera.governance._compatibility import (
    CompatibilityMode,
    Direction,
    Incompatibility,
    check_compatibility,
    reader_incompatibilities,
)
from tessera.governance._errors import IncompatibleSchemaError
from tessera.governance._servicer import (
    GOVERNANCE_SERVICE,
    GovernanceServicer,
    governance_binding,
)
from tessera.governance._settings import GovernanceSettings

__all__ = [
    "GOVERNANCE_SERVICE",
    "CompatibilityMode",
    "Direction",
    "GovernanceServicer",
    "GovernanceSettings",
    "Incompatibility",
    "IncompatibleSchemaError",
    "check_compatibility",
    "governance_binding",
    "reader_incompatibilities",
]
