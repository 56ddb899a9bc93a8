from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class HealthStatus(enum.Enum):
    """Outcome of one health check, as Consul names them."""

    PASSING = "passing"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one health check found.

    Attributes:
        status: The outcome.
        detail: Why, for humans (`"connection refused"`, `"HTTP 503"`); empty when passing.
        latency_s: How long the check took, in seconds.

    """

    status: HealthStatus
    detail: str = ""
    latency_s: float = 0.0


@runtime_checkable
class HealthCheck(Protocol):
    """Probes one instance of a service. Entry-point group: `tessera.health_checks`.

    Factory: the entry point names a class or callable that takes no arguments and returns a
    check.

    Concurrency: `check` is called concurrently from many tasks of one event loop, for many
    targets; it must not block the loop.
    """

    async def check(self, target: str, timeout_s: float) -> CheckResult:
        """Probe a target once.

        Args:
            target: What to probe, in the form the check documents (`host:port` for TCP and gRPC,
                a URL for HTTP).
            timeout_s: The check returns within about this many seconds, > 0.

        Returns:
            The result; an unreachable, slow or failing target is CRITICAL (or WARNING) with a
            detail, never an exception.

        Raises:
            ValidationError: `target` is malformed for this kind of check.

        """
        ...
