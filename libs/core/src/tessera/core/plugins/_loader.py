from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from types import MappingProxyType
from typing import Any, Generic, TypeVar, overload

import structlog

from tessera.core._errors import ConfigError, PluginError
from tessera.core.plugins._families import FAMILIES, PluginFamily

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class Plugin(Generic[P]):
    """A plugin whose entry point loaded and whose factory passed the family's checks.

    Attributes:
        name: The entry-point name, which configuration uses to choose the plugin.
        family: The family it belongs to.
        value: The entry-point value, `module:attribute`.
        distribution: Name of the installed distribution that registers it, when known.
        version: That distribution's version, when known.
        factory: The class or callable the entry point names; `create` calls it.

    """

    name: str
    family: PluginFamily[P]
    value: str
    distribution: str | None
    version: str | None
    factory: Callable[..., P]

    def create(self, *args: Any, **kwargs: Any) -> P:
        """Build a plugin instance with the factory arguments the family's Protocol documents.

        Args:
            *args: Passed to the factory.
            **kwargs: Passed to the factory.

        Returns:
            The instance, checked against the family's Protocol.

        Raises:
            PluginError: The factory raised (the original error is the `__cause__`) or returned
                something that does not satisfy the Protocol.

        """
        try:
            instance = self.factory(*args, **kwargs)
        except Exception as error:  # a plugin's failure, whatever it is, must stay the plugin's
            raise self._error(f"factory raised {error!r}") from error
        problems = self.family.violations(instance)
        if problems:
            raise self._error(f"factory returned {instance!r}, which has " + "; ".join(problems))
        return instance

    def _error(self, reason: str) -> PluginError:
        return PluginError(
            f"plugin {self.name!r} ({self.value}) in {self.family.group}: {reason}",
            plugin=self.name,
            group=self.family.group,
        )


@dataclass(frozen=True, slots=True)
class PluginSet(Generic[P]):
    """The plugins of one family installed in this environment.

    Attributes:
        family: The family.
        loaded: Plugins that loaded, by entry-point name.
        failures: Plugins that did not, by entry-point name; each error names the plugin, its group
            and entry-point value, and keeps the original error as `__cause__`. When two
            distributions register the same name, the first one found loads and the other is a
            failure keyed `"name (distribution)"`.

    """

    family: PluginFamily[P]
    loaded: Mapping[str, Plugin[P]]
    failures: Mapping[str, PluginError]

    def get(self, name: str) -> Plugin[P]:
        """Return the plugin a configuration names.

        Args:
            name: The entry-point name.

        Returns:
            The loaded plugin.

        Raises:
            PluginError: The plugin failed to load (the recorded error) or is not installed.

        """
        if name in self.loaded:
            return self.loaded[name]
        if name in self.failures:
            raise self.failures[name]
        installed = ", ".join(sorted(self.loaded)) or "none"
        raise PluginError(
            f"no plugin {name!r} in {self.family.group} (installed: {installed})",
            plugin=name,
            group=self.family.group,
        )


@overload
def load_plugins(family: PluginFamily[P]) -> PluginSet[P]: ...
@overload
def load_plugins(family: str) -> PluginSet[Any]: ...
def load_plugins(family: PluginFamily[Any] | str) -> PluginSet[Any]:
    """Load every plugin of one family, isolating the ones that fail.

    A plugin fails when its module cannot be imported, importing it raises, or the object it names
    is not a valid factory: a class that lacks a method of the family's Protocol (or has it
    synchronous where the Protocol's is async, or the reverse), or neither a class nor a callable.
    Each failure is logged (event `plugin_load_failed`) and recorded; the other plugins still
    load. Callables other than classes are checked when `Plugin.create` calls them.

    Args:
        family: The family, or its entry-point group (`"tessera.balancers"`).

    Returns:
        The loaded plugins and the failures.

    Raises:
        ConfigError: `family` is a group that is not a plugin family.

    """
    if isinstance(family, str):
        if family not in FAMILIES:
            known = ", ".join(FAMILIES)
            raise ConfigError(f"{family!r} is not a plugin group (known: {known})")
        family = FAMILIES[family]
    loaded: dict[str, Plugin[Any]] = {}
    failures: dict[str, PluginError] = {}
    for entry_point in entry_points(group=family.group):
        name = entry_point.name
        if name in loaded or name in failures:
            name = f"{name} ({_distribution(entry_point) or 'unknown distribution'})"
            _record(family, entry_point, name, failures, "the name is registered twice", None)
            continue
        try:
            factory = entry_point.load()
        except Exception as error:  # import errors of any kind belong to the plugin, not to us
            _record(family, entry_point, name, failures, f"failed to load: {error!r}", error)
            continue
        problems = _factory_problems(family, factory)
        if problems:
            _record(family, entry_point, name, failures, "; ".join(problems), None)
            continue
        distribution = entry_point.dist
        loaded[name] = Plugin(
            name=name,
            family=family,
            value=entry_point.value,
            distribution=_distribution(entry_point),
            version=None if distribution is None else distribution.version,
            factory=factory,
        )
    return PluginSet(family, MappingProxyType(loaded), MappingProxyType(failures))


def load_all() -> Mapping[str, PluginSet[Any]]:
    """Load the plugins of every family in `FAMILIES`.

    Returns:
        One `PluginSet` per family, keyed by entry-point group.

    """
    return MappingProxyType({group: load_plugins(family) for group, family in FAMILIES.items()})


def _factory_problems(family: PluginFamily[Any], factory: object) -> list[str]:
    if isinstance(factory, type):
        problems = family.violations(factory)
        protocol = family.protocol.__name__
        return [f"{factory.__qualname__} is not a {protocol}: {p}" for p in problems]
    if not callable(factory):
        return [f"{factory!r} is neither a class nor a callable"]
    return []


def _distribution(entry_point: EntryPoint) -> str | None:
    return None if entry_point.dist is None else entry_point.dist.name


def _record(
    family: PluginFamily[Any],
    entry_point: EntryPoint,
    name: str,
    failures: dict[str, PluginError],
    reason: str,
    cause: BaseException | None,
) -> None:
    error = PluginError(
        f"plugin {entry_point.name!r} ({entry_point.value}) in {family.group}: {reason}",
        plugin=entry_point.name,
        group=family.group,
    )
    error.__cause__ = cause
    failures[name] = error
    # A fresh logger each time: a module-level one cached on first use would keep processors that
    # were configured before logging was set up (or before a test captured it).
    structlog.get_logger(__name__).warning(
        "plugin_load_failed",
        plugin=entry_point.name,
        group=family.group,
        value=entry_point.value,
        distribution=_distribution(entry_point),
        error=reason,
    )
