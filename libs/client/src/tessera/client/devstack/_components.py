from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tessera.client.devstack._health import ComponentKind, ComponentStatus, Health


class Component(BaseModel):
    """One part of a development stack: what it is, where it answers, which process runs it.

    Attributes:
        name: Unique name in the stack (``etcd``, ``redis``, a service name, ``worker``, ``beat``).
        kind: What it is; decides how it is probed.
        endpoint: ``host:port`` for etcd and services, the Redis URL for redis, and the broker URL
            (where the heartbeat is read) for worker and beat.
        pid: Process id when the stack started the process, else None.
        log: The process's log file when the stack started it, else None.

    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    kind: ComponentKind
    endpoint: str
    pid: int | None = None
    log: Path | None = None

    def status(self, health: Health, detail: str = "") -> ComponentStatus:
        """Return the status of this component with the given health and reason."""
        return ComponentStatus(
            name=self.name,
            kind=self.kind,
            endpoint=self.endpoint,
            health=health,
            detail=detail,
            pid=self.pid,
            log=self.log,
        )
