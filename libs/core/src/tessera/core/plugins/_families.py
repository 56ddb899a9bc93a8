from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from tessera.core.plugins._balancer import Balancer
from tessera.core.plugins._health_check import HealthCheck
from tessera.core.plugins._limiter import Limiter
from tessera.core.plugins._lock_backend import LockBackend
from tessera.core.plugins._rule_engine import RuleEngine

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class PluginFamily(Generic[P]):
    """One kind of pluggable algorithm: its entry-point group and the Protocol plugins satisfy.

    Attributes:
        name: Short name of the family (`"balancer"`).
        group: The entry-point group plugins register under (`"tessera.balancers"`).
        protocol: The `typing.Protocol` whose docstring is the family's contract.
        description: One line for `tessera plugins list`.

    """

    name: str
    group: str
    # type[Any], not type[P]: mypy refuses a Protocol class where type[P] is expected
    # ("type-abstract"), so each family constant below states its P in its annotation instead.
    protocol: type[Any]
    description: str

    def violations(self, candidate: object) -> list[str]:
        """List how a class or instance falls short of the family's Protocol.

        Checks that each method of the Protocol exists and is a coroutine function exactly when the
        Protocol's is; signatures are not compared, so a wrong signature surfaces at call time.

        Args:
            candidate: A plugin class or a plugin instance.

        Returns:
            One sentence per problem; empty when the candidate satisfies the Protocol.

        """
        problems = []
        for method, expected_async in _protocol_methods(self.protocol).items():
            found = getattr(candidate, method, None)
            if not callable(found):
                problems.append(f"missing method {method}()")
            elif inspect.iscoroutinefunction(found) != expected_async:
                kind = "async" if expected_async else "synchronous"
                problems.append(f"{method}() must be {kind}")
        return problems


def _protocol_methods(protocol: type[Any]) -> dict[str, bool]:
    """Public methods a Protocol declares, with whether each is a coroutine function."""
    return {
        name: inspect.iscoroutinefunction(member)
        for name, member in vars(protocol).items()
        if not name.startswith("_") and callable(member)
    }


BALANCERS: PluginFamily[Balancer] = PluginFamily(
    name="balancer",
    group="tessera.balancers",
    protocol=Balancer,
    description="pick an endpoint of a service for each call",
)
LIMITERS: PluginFamily[Limiter] = PluginFamily(
    name="limiter",
    group="tessera.limiters",
    protocol=Limiter,
    description="decide whether traffic for a key fits a rate",
)
LOCK_BACKENDS: PluginFamily[LockBackend] = PluginFamily(
    name="lock_backend",
    group="tessera.lock_backends",
    protocol=LockBackend,
    description="store distributed locks with fencing tokens",
)
RULE_ENGINES: PluginFamily[RuleEngine] = PluginFamily(
    name="rule_engine",
    group="tessera.rule_engines",
    protocol=RuleEngine,
    description="compile and evaluate data rules",
)
HEALTH_CHECKS: PluginFamily[HealthCheck] = PluginFamily(
    name="health_check",
    group="tessera.health_checks",
    protocol=HealthCheck,
    description="probe one instance of a service",
)

#: Every plugin family, keyed by entry-point group.
FAMILIES: Mapping[str, PluginFamily[Any]] = MappingProxyType(
    {
        family.group: family
        for family in (BALANCERS, LIMITERS, LOCK_BACKENDS, RULE_ENGINES, HEALTH_CHECKS)
    }
)
