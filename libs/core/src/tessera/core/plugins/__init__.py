"""Plugin families and the loader that finds plugins through entry points.

Every algorithm in Tessera is a plugin, registered exactly like a third-party one: under the
entry-point group of its family, naming a factory (a class, or a callable returning an instance).
Each family is a `typing.Protocol` whose docstring is the contract, including what the factory is
called with:

| group                  | Protocol      | factory arguments      |
|------------------------|---------------|------------------------|
| tessera.balancers      | `Balancer`    | none                   |
| tessera.limiters       | `Limiter`     | none                   |
| tessera.lock_backends  | `LockBackend` | `TesseraSettings`      |
| tessera.rule_engines   | `RuleEngine`  | none                   |
| tessera.health_checks  | `HealthCheck` | none                   |

A third-party package registers a plugin in its pyproject.toml::

    [project.entry-points."tessera.balancers"]
    p2c_peak_ewma = "my_package.balancer:PeakEwmaBalancer"

and a service uses it by name::

    balancers = load_plugins(BALANCERS)
    balancer = balancers.get(settings.balancer).create()

`load_plugins` never lets one plugin break the others: a plugin that fails to import or is not a
valid factory is logged and recorded in `PluginSet.failures` as a `PluginError`.
"""

from tessera.core.plugins._balancer import Balancer, Endpoint, LoadAwareBalancer
from tessera.core.plugins._families import (
    BALANCERS,
    FAMILIES,
    HEALTH_CHECKS,
    LIMITERS,
    LOCK_BACKENDS,
    RULE_ENGINES,
    PluginFamily,
)
from tessera.core.plugins._health_check import CheckResult, HealthCheck, HealthStatus
from tessera.core.plugins._limiter import (
    Alignment,
    GrantingLimiter,
    LimitDecision,
    Limiter,
    QuotaGrant,
    Rate,
    ReleasingLimiter,
)
from tessera.core.plugins._loader import Plugin, PluginSet, load_all, load_plugins
from tessera.core.plugins._lock_backend import (
    LockBackend,
    LockEntry,
    LockGrant,
    LockMode,
    LockSession,
    LockState,
    ReleaseOutcome,
    Safety,
)
from tessera.core.plugins._rule_engine import CompiledRule, EvaluationFailure, RuleEngine, Verdict

__all__ = [
    "BALANCERS",
    "FAMILIES",
    "HEALTH_CHECKS",
    "LIMITERS",
    "LOCK_BACKENDS",
    "RULE_ENGINES",
    "Alignment",
    "Balancer",
    "CheckResult",
    "CompiledRule",
    "Endpoint",
    "EvaluationFailure",
    "GrantingLimiter",
    "HealthCheck",
    "HealthStatus",
    "LimitDecision",
    "Limiter",
    "LoadAwareBalancer",
    "LockBackend",
    "LockEntry",
    "LockGrant",
    "LockMode",
    "LockSession",
    "LockState",
    "Plugin",
    "PluginFamily",
    "PluginSet",
    "QuotaGrant",
    "Rate",
    "ReleaseOutcome",
    "ReleasingLimiter",
    "RuleEngine",
    "Safety",
    "Verdict",
    "load_all",
    "load_plugins",
]
