import enum
from dataclasses import dataclass
from pathlib import Path


class Health(enum.StrEnum):
    """Health of one stack component, as the CLI shows it."""

    STARTING = "starting"
    """Launched, not answering yet."""
    HEALTHY = "healthy"
    """Answers its health probe."""
    UNHEALTHY = "unhealthy"
    """Should be answering and is not (or answers that it is not serving)."""
    FAILED = "failed"
    """Its process is gone."""
    STOPPED = "stopped"
    """Stopped on purpose, during shutdown."""


class ComponentKind(enum.StrEnum):
    """What a stack component is, which decides how it is probed and in which order it stops."""

    ETCD = "etcd"
    REDIS = "redis"
    SERVICE = "service"
    WORKER = "worker"
    BEAT = "beat"


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    """One component's health at one instant.

    Attributes:
        name: Component name (``etcd``, ``redis``, a service name, ``worker``, ``beat``).
        kind: What the component is.
        endpoint: Where it answers: ``host:port``, a ``redis://`` URL, or for worker and beat the
            broker, where their heartbeat is read.
        health: Result of the latest probe, or of the process state when the process is gone.
        detail: Human-readable reason behind ``health`` (empty when healthy).
        pid: Process id, when known.
        log: Log file of the process, when the stack started it.

    """

    name: str
    kind: ComponentKind
    endpoint: str
    health: Health
    detail: str = ""
    pid: int | None = None
    log: Path | None = None
