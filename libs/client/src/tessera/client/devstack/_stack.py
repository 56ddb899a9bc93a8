import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from tessera.client.devstack._check import probe_component
from tessera.client.devstack._children import ChildProcess
from tessera.client.devstack._components import Component
from tessera.client.devstack._health import ComponentKind, ComponentStatus, Health
from tessera.client.devstack._jobs import beat_command, worker_command
from tessera.client.devstack._manifest import StackManifest
from tessera.client.devstack._ports import StackPorts
from tessera.core import ENV_PREFIX, FailedPreconditionError, grpc_transport_environment
from tessera.core.embedded import EmbeddedServer, EtcdCluster, EtcdServer, RedisServer

_SERVER_START_TIMEOUT_S = 30.0
_SERVER_STOP_TIMEOUT_S = 10.0
# Services drain in-flight calls for shutdown_grace_s (10 s by default) after SIGTERM.
_SERVICE_STOP_GRACE_S = 15.0
# A Celery worker's warm shutdown waits for the tasks it is running.
_JOBS_STOP_GRACE_S = 15.0
_PROBE_TIMEOUT_S = 0.8

Progress = Callable[[str], None]


class StackRunningError(FailedPreconditionError):
    """Another ``tessera dev up`` owns the data directory, or a port the stack needs is taken."""


@dataclass(frozen=True, slots=True)
class DevStackConfig:
    """What a development stack runs and where.

    Attributes:
        data_dir: Holds etcd and Redis data, every log file and ``stack.json``.
        ports: Every port of the stack.
        services: Module per service name (see ``discover_services``); empty runs none.
        host: Address every component listens on.
        startup_timeout_s: How long a component may take to become healthy before it is shown
            unhealthy instead of starting.

    """

    data_dir: Path
    ports: StackPorts
    services: Mapping[str, str]
    host: str = "127.0.0.1"
    startup_timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class _Server:
    """etcd or Redis, run by tessera.core.embedded."""

    server: EmbeddedServer
    kind: ComponentKind
    endpoint: str

    def component(self) -> Component:
        return Component(
            name=self.server.name,
            kind=self.kind,
            endpoint=self.endpoint,
            pid=self.server.pid,
            log=self.server.log_path,
        )

    def exit_reason(self) -> str | None:
        return None if self.server.running else "exited"


@dataclass(frozen=True, slots=True)
class _Child:
    """A service, the worker or beat."""

    launch: Component  # without a pid
    process: ChildProcess

    def component(self) -> Component:
        return self.launch.model_copy(update={"pid": self.process.pid})

    def exit_reason(self) -> str | None:
        if self.process.pid is None:
            return "not started"
        code = self.process.returncode
        if code is None:
            return None
        return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"


def _noop(message: str) -> None:
    del message


class DevStack:
    """etcd, Redis, every service, a Celery worker and beat, run as child processes.

    With ``config.ports.etcd_cluster`` set, etcd runs as a cluster of that many members; with
    ``config.ports.replicas``, those services run that many replicas (``StackPorts.plan(...,
    cluster=True)``: the topology of deploy/docker-compose.yml). Every process gets every etcd
    member and every registry replica in its settings.

    Lifecycle: :meth:`start` once, :meth:`check` as often as wanted, :meth:`stop` once (also
    after a failed or aborted start). One event loop drives the stack; its methods are not safe to
    call concurrently with each other.

    Args:
        config: What to run and where.

    """

    def __init__(self, config: DevStackConfig) -> None:
        self.config = config
        ports = config.ports
        # Both start and stop as one unit: a cluster launches every member before waiting.
        self._etcd: EtcdCluster | EtcdServer
        if ports.etcd_cluster:
            self._etcd = EtcdCluster(
                config.data_dir / "etcd",
                len(ports.etcd_cluster),
                host=config.host,
                ports=ports.etcd_cluster,
            )
            self._etcd_members = list(self._etcd.members)
        else:
            self._etcd = EtcdServer(
                config.data_dir / "etcd",
                port=ports.etcd,
                peer_port=ports.etcd_peer,
                host=config.host,
            )
            self._etcd_members = [self._etcd]
        self._redis = RedisServer(config.data_dir / "redis", port=ports.redis, host=config.host)
        logs = config.data_dir / "logs"
        shared = {
            f"{ENV_PREFIX}ETCD_ENDPOINTS": ",".join(self.etcd_endpoints),
            f"{ENV_PREFIX}REDIS_URL": self.redis_url,
            # The logs are files a person reads.
            f"{ENV_PREFIX}LOG_FORMAT": "console",
            **grpc_transport_environment(),
        }
        instances = ports.instances()
        registries = [f"{config.host}:{i.ports.port}" for i in instances if i.service == "registry"]
        # Every service (the registry too) registers itself there: `tessera registry ls`.
        shared_services = (
            {**shared, f"{ENV_PREFIX}REGISTRY_ENDPOINTS": ",".join(registries)}
            if registries
            else shared
        )
        self._services = [
            self._child(
                instance.name,
                ComponentKind.SERVICE,
                f"{config.host}:{instance.ports.port}",
                [sys.executable, "-m", config.services[instance.service]],
                logs / f"{instance.name}.log",
                {
                    **shared_services,
                    f"{ENV_PREFIX}HOST": config.host,
                    f"{ENV_PREFIX}PORT": str(instance.ports.port),
                    f"{ENV_PREFIX}METRICS_PORT": str(instance.ports.metrics_port),
                },
            )
            for instance in instances
        ]
        self._jobs = [
            self._child(
                "worker",
                ComponentKind.WORKER,
                self.redis_url,
                worker_command(),
                logs / "worker.log",
                shared,
            ),
            self._child(
                "beat",
                ComponentKind.BEAT,
                self.redis_url,
                beat_command(config.data_dir / "beat"),
                logs / "beat.log",
                shared,
            ),
        ]
        self._members: list[_Server | _Child] = [
            *(_Server(m, ComponentKind.ETCD, m.endpoint) for m in self._etcd_members),
            _Server(self._redis, ComponentKind.REDIS, self.redis_url),
            *self._services,
            *self._jobs,
        ]
        self._healthy_once: set[str] = set()
        self._started_at: float | None = None
        self._manifest_written = False

    @staticmethod
    def _child(
        name: str,
        kind: ComponentKind,
        endpoint: str,
        command: Sequence[str],
        log: Path,
        environment: Mapping[str, str],
    ) -> _Child:
        return _Child(
            Component(name=name, kind=kind, endpoint=endpoint, log=log),
            ChildProcess(command, log, environment),
        )

    @property
    def etcd_endpoint(self) -> str:
        """``host:port`` of etcd (of its first member in a cluster)."""
        return self._etcd_members[0].endpoint

    @property
    def etcd_endpoints(self) -> list[str]:
        """``host:port`` of every etcd member."""
        return [member.endpoint for member in self._etcd_members]

    @property
    def redis_url(self) -> str:
        """URL of Redis, also the Celery broker."""
        return self._redis.url

    def components(self) -> list[Component]:
        """Every component in start order, with its pid once started."""
        return [member.component() for member in self._members]

    async def start(
        self, *, abort: asyncio.Event | None = None, progress: Progress = _noop
    ) -> None:
        """Start etcd and Redis and wait until they answer, then launch the rest and return.

        Services, the worker and beat are launched without waiting for them: :meth:`check`
        follows them until they are healthy. ``stack.json`` is written once everything runs.

        Args:
            abort: When set (a signal arrived), the start ends after the step under way; the
                caller then calls :meth:`stop`.
            progress: Receives one line per step, for the user.

        Raises:
            StackRunningError: Another stack owns the data directory, or a port is taken.
            BinaryNotFoundError: etcd or redis-server is not installed.
            ServerStartError: etcd or Redis did not start.

        """
        config = self.config
        self._refuse_running_stack()
        self._refuse_taken_ports()
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self._started_at = time.monotonic()
        etcd_logs = ", ".join(str(member.log_path) for member in self._etcd_members)
        for name, server, where, logs in (
            ("etcd", self._etcd, ", ".join(self.etcd_endpoints), etcd_logs),
            ("redis", self._redis, self.redis_url, str(self._redis.log_path)),
        ):
            if abort is not None and abort.is_set():
                return
            progress(f"starting {name} on {where} (log: {logs})")
            await asyncio.to_thread(server.start, _SERVER_START_TIMEOUT_S)
        for child in self._services + self._jobs:
            if abort is not None and abort.is_set():
                return
            progress(f"starting {child.launch.name} (log: {child.launch.log})")
            child.process.start()
        StackManifest(
            supervisor_pid=os.getpid(),
            etcd_endpoints=tuple(self.etcd_endpoints),
            redis_url=self.redis_url,
            components=tuple(self.components()),
        ).write(config.data_dir)
        self._manifest_written = True

    async def check(self, timeout_s: float = _PROBE_TIMEOUT_S) -> list[ComponentStatus]:
        """Probe every component at once and judge its health.

        A component whose process has exited is FAILED. One that does not answer is STARTING
        until it has been healthy once or the startup timeout has passed, UNHEALTHY after.

        Args:
            timeout_s: Seconds each probe may take; the probes run concurrently.

        Returns:
            One status per component, in start order.

        """
        members = [(member.component(), member.exit_reason()) for member in self._members]
        results = iter(
            await asyncio.gather(
                *(probe_component(component, timeout_s) for component, gone in members if not gone)
            )
        )
        statuses = []
        for component, exit_reason in members:
            if exit_reason:
                statuses.append(component.status(Health.FAILED, exit_reason))
                continue
            result = next(results)
            if result.healthy:
                self._healthy_once.add(component.name)
                statuses.append(component.status(Health.HEALTHY))
            elif component.name in self._healthy_once or self._past_startup():
                statuses.append(component.status(Health.UNHEALTHY, result.detail))
            else:
                statuses.append(component.status(Health.STARTING, result.detail))
        return statuses

    async def stop(self, progress: Progress = _noop) -> None:
        """Stop everything in order: services (SIGTERM: they drain), worker and beat, Redis, etcd.

        Each process gets a grace period and is then killed with its whole process group. Removes
        ``stack.json``. Safe after a partial or aborted start.

        Args:
            progress: Receives one line per step, for the user.

        """
        for group, grace in (
            (self._services, _SERVICE_STOP_GRACE_S),
            (self._jobs, _JOBS_STOP_GRACE_S),
        ):
            running = [child.launch.name for child in group if child.process.running]
            if running:
                progress("stopping " + ", ".join(running))
            await _stop_children([child.process for child in group], grace)
        for name, server, members in (
            ("redis", self._redis, [self._redis]),
            ("etcd", self._etcd, self._etcd_members),
        ):
            if any(member.running for member in members):
                progress(f"stopping {name}")
            await asyncio.to_thread(server.stop, _SERVER_STOP_TIMEOUT_S)
        if self._manifest_written:
            StackManifest.remove(self.config.data_dir)

    def _past_startup(self) -> bool:
        return (
            self._started_at is not None
            and time.monotonic() - self._started_at > self.config.startup_timeout_s
        )

    def _refuse_running_stack(self) -> None:
        manifest = StackManifest.read(self.config.data_dir)
        if manifest is not None and psutil.pid_exists(manifest.supervisor_pid):
            raise StackRunningError(
                f"a stack already runs from {self.config.data_dir} "
                f"(tessera dev up, pid {manifest.supervisor_pid})"
            )

    def _refuse_taken_ports(self) -> None:
        wanted = self.config.ports.all_ports()
        taken = [
            f"{name} {port}" for name, port in wanted.items() if _taken(self.config.host, port)
        ]
        if taken:
            raise StackRunningError(
                f"ports in use on {self.config.host}: {', '.join(taken)}; "
                "stop what holds them or shift the stack with --port-offset"
            )


def _taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers do: a port whose old connections linger in TIME_WAIT is free to them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


async def _stop_children(processes: Sequence[ChildProcess], grace_s: float) -> None:
    for process in processes:
        process.terminate()
    await asyncio.gather(*(asyncio.to_thread(process.wait, grace_s) for process in processes))
    for process in processes:
        # Also reaps what a process left behind in its group (a Celery pool, a grandchild).
        await asyncio.to_thread(process.kill)
