from __future__ import annotations

import asyncio
from collections.abc import Collection

import structlog

from tessera.core import BackendError, NotFoundError, ValidationError
from tessera.core.etcd import EtcdClient, EventType, KeyValue, Relist, WatchEvent
from tessera.ratelimit._config import parse_domain
from tessera.ratelimit._rulebook import AppliedDomain, RuleBook

_log = structlog.get_logger("tessera.ratelimit")

#: etcd prefix of the domains' YAML, one key per domain (docs/keyspace.md).
CONFIG_PREFIX = "/tessera/ratelimit/config/domains/"

#: Pause before watching again after etcd failed, doubling per failure up to the maximum.
_REWATCH_DELAY_S = 1.0
_REWATCH_MAX_DELAY_S = 30.0


def config_key(domain: str) -> str:
    """Return the etcd key holding `domain`'s YAML."""
    return CONFIG_PREFIX + domain


class ConfigStore:
    """Rate-limit configuration in etcd: validated on write, versioned by etcd revision.

    Args:
        etcd: A connected client.
        algorithms: Names of the installed limiters, for validation.

    """

    def __init__(self, etcd: EtcdClient, *, algorithms: Collection[str]) -> None:
        self._etcd = etcd
        self._algorithms = algorithms

    async def apply(self, text: str) -> AppliedDomain:
        """Validate one domain's YAML and store it; services apply it through their watch.

        Returns:
            The stored configuration and its version (`etcd:<revision>`).

        Raises:
            ValidationError: The YAML is invalid; nothing was stored.
            BackendError: etcd failed.

        """
        config = parse_domain(text, algorithms=self._algorithms)
        revision = await self._etcd.put(config_key(config.domain), text)
        return AppliedDomain(config, f"etcd:{revision}")

    async def get(self, domain: str) -> AppliedDomain:
        """Read one domain's stored configuration.

        Raises:
            NotFoundError: No configuration is stored for `domain`.
            ValidationError: The stored YAML is invalid (written around `apply`).
            BackendError: etcd failed.

        """
        found = await self._etcd.get(config_key(domain))
        if found is None:
            raise NotFoundError(f"no rate-limit configuration stored for domain {domain!r}")
        return self._parse(found)

    async def stored(self) -> tuple[dict[str, AppliedDomain], dict[str, str]]:
        """Read every stored domain.

        Returns:
            The valid domains by name, and the invalid ones (written around `apply`) with the
            validation message.

        Raises:
            BackendError: etcd failed.

        """
        snapshot = await self._etcd.get_prefix(CONFIG_PREFIX)
        valid: dict[str, AppliedDomain] = {}
        invalid: dict[str, str] = {}
        for item in snapshot.items:
            domain = item.key.decode().removeprefix(CONFIG_PREFIX)
            try:
                valid[domain] = self._parse(item)
            except ValidationError as error:
                invalid[domain] = error.message
        return valid, invalid

    async def delete(self, domain: str) -> bool:
        """Delete one domain's stored configuration; returns whether it existed."""
        return await self._etcd.delete(config_key(domain))

    def _parse(self, item: KeyValue) -> AppliedDomain:
        source = f"{item.key.decode()}:"
        config = parse_domain(item.value.decode(), algorithms=self._algorithms, source=source)
        return AppliedDomain(config, f"etcd:{item.mod_revision}")

    async def follow(self, rules: RuleBook) -> None:
        """Keep `rules` equal to what etcd stores, until cancelled.

        Reads the whole prefix, then applies each change from the watch. A stored domain that
        fails validation is logged and skipped: its previous version keeps serving. When etcd is
        unreachable the last applied configuration keeps serving while this retries, waiting 1 s
        after a failure and doubling up to 30 s.
        """
        delay = _REWATCH_DELAY_S
        while True:
            try:
                snapshot = await self._etcd.get_prefix(CONFIG_PREFIX)
                rules.replace_stored(self._valid(snapshot.items, rules))
                delay = _REWATCH_DELAY_S
                async for change in self._etcd.watch_prefix(
                    CONFIG_PREFIX, start_revision=snapshot.revision + 1
                ):
                    self._apply(change, rules)
            except BackendError as error:
                _log.warning(
                    "rate-limit config watch failed; serving the last applied config",
                    error=error.message,
                    retry_in_s=delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _REWATCH_MAX_DELAY_S)

    def _apply(self, change: WatchEvent | Relist, rules: RuleBook) -> None:
        if isinstance(change, Relist):
            rules.replace_stored(self._valid(change.snapshot.items, rules))
            return
        domain = change.key.decode().removeprefix(CONFIG_PREFIX)
        if change.type is EventType.DELETE:
            rules.remove_stored(domain)
            _log.info("rate-limit config removed", domain=domain, revision=change.revision)
            return
        item = KeyValue(change.key, change.value, 0, change.revision, 0, 0)
        applied = self._valid((item,), rules).get(domain)
        if applied is not None:
            rules.put_stored(applied)
            _log.info("rate-limit config applied", domain=domain, version=applied.version)

    def _valid(self, items: tuple[KeyValue, ...], rules: RuleBook) -> dict[str, AppliedDomain]:
        valid: dict[str, AppliedDomain] = {}
        for item in items:
            domain = item.key.decode().removeprefix(CONFIG_PREFIX)
            try:
                applied = self._parse(item)
            except ValidationError as error:
                _log.error(
                    "invalid rate-limit config in etcd; keeping the previous version",
                    key=item.key.decode(),
                    error=error.message,
                )
                previous = rules.get(domain)
                if previous is not None and previous.version.startswith("etcd:"):
                    valid[domain] = previous
                continue
            if applied.config.domain != domain:
                _log.error(
                    "rate-limit config stored under another domain's key; ignored",
                    key=item.key.decode(),
                    domain=applied.config.domain,
                )
                continue
            valid[domain] = applied
        return valid
