"""Conformance kit for health-check plugins (`tessera.health_checks`, `HealthCheck`).

Subclass `HealthCheckConformance` in a test module, say how the check addresses a server, and
provide a `healthy_target` fixture: a target (in the check's own form) of a real server that is
healthy for this kind of check. pytest then runs every check of the contract::

    import pytest_asyncio
    from tessera.testing.conformance.health_checks import HealthCheckConformance

    class TestMyCheck(HealthCheckConformance):
        entry_point = "my_check"

        def make_check(self):
            return MyCheck()

        def target_for(self, host, port):
            return f"my://{host}:{port}"

        @pytest_asyncio.fixture
        async def healthy_target(self):
            async with start_my_server() as server:
                yield self.target_for("127.0.0.1", server.port)

The checks: the plugin loads through its entry point; a healthy target is PASSING with a
latency; a refused connection is CRITICAL with a detail, not an exception; a target that accepts
connections and never answers makes the check return within the timeout plus one second (any
status; a TCP check legitimately passes); a malformed target raises `ValidationError` naming
`target`; twenty concurrent checks of a healthy target all pass.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tessera.core import ValidationError
from tessera.core.embedded import free_port
from tessera.core.plugins import HEALTH_CHECKS, CheckResult, HealthCheck, HealthStatus, load_plugins
from tessera.testing._proxy import TcpProxy

#: Timeout given to checks that must not hang.
TIMEOUT_S = 1.0


class HealthCheckConformance:
    """The checks of the `HealthCheck` contract; subclass it and fill in the blanks.

    Attributes:
        entry_point: The name the plugin is registered under in `tessera.health_checks`.
        malformed_target: A target the check must refuse with `ValidationError`.

    """

    entry_point: str = ""
    malformed_target: str = "not a target"

    def make_check(self) -> HealthCheck:
        """Return a new check under test."""
        raise NotImplementedError("subclasses return the check under test")

    def target_for(self, host: str, port: int) -> str:
        """Return the check's target for a server listening on `host:port`."""
        raise NotImplementedError("subclasses say how the check addresses a server")

    def test_registered_under_its_entry_point(self) -> None:
        """Check the plugin loads through its entry point and builds the same class."""
        assert self.entry_point, "set entry_point to the name the plugin is registered under"
        plugin = load_plugins(HEALTH_CHECKS).get(self.entry_point)
        assert type(plugin.create()) is type(self.make_check())

    async def test_healthy_target_passes(self, healthy_target: str) -> None:
        """Check a healthy server is PASSING, with its latency measured."""
        result = await self.make_check().check(healthy_target, TIMEOUT_S * 5)
        assert isinstance(result, CheckResult)
        assert result.status is HealthStatus.PASSING, result.detail
        assert result.latency_s > 0

    async def test_refused_connection_is_critical(self) -> None:
        """Check a port nobody listens on is CRITICAL with a detail, not an exception."""
        target = self.target_for("127.0.0.1", free_port())
        result = await self.make_check().check(target, TIMEOUT_S)
        assert result.status is HealthStatus.CRITICAL
        assert result.detail

    async def test_silent_target_returns_within_the_timeout(self) -> None:
        """Check a server that accepts and never answers does not hang the check."""
        async with TcpProxy("127.0.0.1", free_port()) as silent:
            silent.blackhole()
            target = self.target_for("127.0.0.1", silent.listen_port)
            started = time.perf_counter()
            result = await self.make_check().check(target, TIMEOUT_S)
            assert time.perf_counter() - started < TIMEOUT_S + 1.0
            assert isinstance(result, CheckResult)
            await silent.heal()

    async def test_malformed_target_raises_validation_error(self) -> None:
        """Check a malformed target raises ValidationError naming `target`."""
        with pytest.raises(ValidationError) as caught:
            await self.make_check().check(self.malformed_target, TIMEOUT_S)
        assert [v.field for v in caught.value.violations] == ["target"]

    async def test_concurrent_checks_all_pass(self, healthy_target: str) -> None:
        """Check twenty concurrent checks of a healthy target all pass."""
        check = self.make_check()
        results = await asyncio.gather(
            *(check.check(healthy_target, TIMEOUT_S * 5) for _ in range(20))
        )
        assert {r.status for r in results} == {HealthStatus.PASSING}
