from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from tessera.core import ConfigError, ValidationError
from tessera.ratelimit._config import DomainConfig, parse_domain


@dataclass(frozen=True, slots=True)
class AppliedDomain:
    """A domain's configuration as it serves, with where it came from.

    Attributes:
        config: The parsed configuration.
        version: `etcd:<mod_revision>` for configuration from etcd, `file:<digest prefix>` for a
            file of the start-up directory.

    """

    config: DomainConfig
    version: str


class RuleBook:
    """The configuration every request reads: start-up files overlaid with etcd, per domain.

    Updates replace the whole mapping at once, so a request that read it once sees one consistent
    configuration even while a change is applied; nothing is ever half-applied.

    Concurrency: one event loop; readers never wait.

    Args:
        files: Domains loaded from the configuration directory at start-up.

    """

    def __init__(self, files: Mapping[str, DomainConfig] | None = None) -> None:
        self._files = {
            name: AppliedDomain(config, f"file:{config.digest[:12]}")
            for name, config in (files or {}).items()
        }
        self._stored: dict[str, AppliedDomain] = {}
        self._view: Mapping[str, AppliedDomain] = MappingProxyType(dict(self._files))

    def get(self, domain: str) -> AppliedDomain | None:
        """Return the serving configuration of `domain`, or None."""
        return self._view.get(domain)

    @property
    def domains(self) -> Mapping[str, AppliedDomain]:
        """Every serving domain (an immutable snapshot)."""
        return self._view

    def replace_stored(self, stored: Mapping[str, AppliedDomain]) -> None:
        """Replace everything that came from etcd (after a full read or a relist)."""
        self._stored = dict(stored)
        self._publish()

    def put_stored(self, applied: AppliedDomain) -> None:
        """Apply one domain from etcd, replacing its previous version."""
        self._stored[applied.config.domain] = applied
        self._publish()

    def remove_stored(self, domain: str) -> None:
        """Forget a domain deleted from etcd (its start-up file, if any, serves again)."""
        self._stored.pop(domain, None)
        self._publish()

    def _publish(self) -> None:
        self._view = MappingProxyType({**self._files, **self._stored})


def load_directory(directory: Path, *, algorithms: Collection[str]) -> dict[str, DomainConfig]:
    """Parse every `*.yaml` and `*.yml` file of a directory (not recursive), one domain each.

    Raises:
        ConfigError: The directory cannot be read, a file is invalid (the message names the file
            and each offending field path), or two files configure one domain.

    """
    try:
        files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))
    except OSError as error:
        raise ConfigError(f"cannot read {directory}: {error}", source=str(directory)) from error
    domains: dict[str, DomainConfig] = {}
    owners: dict[str, Path] = {}
    for path in files:
        try:
            config = parse_domain(path.read_text(), algorithms=algorithms, source=f"{path.name}:")
        except ValidationError as error:
            raise ConfigError(error.message, source=str(path)) from error
        except OSError as error:
            raise ConfigError(f"cannot read {path}: {error}", source=str(path)) from error
        if config.domain in domains:
            first = owners[config.domain].name
            raise ConfigError(
                f"{path.name}: domain {config.domain!r} is configured by {first} too",
                source=str(path),
            )
        domains[config.domain], owners[config.domain] = config, path
    return domains
