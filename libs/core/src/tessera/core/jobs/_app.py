from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, cast

from celery import Celery, Task

from tessera.core._errors import ConfigError
from tessera.core.jobs._settings import WorkerSettings
from tessera.core.redis import celery_broker

#: Entry-point group of task modules; each entry point's name is the queue its tasks run on.
JOBS_GROUP = "tessera.jobs"
#: The queue of Tessera's own tasks, and of tasks whose name does not follow the convention.
CORE_QUEUE = "core"


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a task module's `register` function receives.

    Attributes:
        app: The Celery app the tasks are defined on (through `task`).
        settings: The process's settings, for the tasks to read (Redis URL, intervals).
        queue: The queue of the module's tasks: its entry-point name.

    """

    app: Celery
    settings: WorkerSettings
    queue: str
    _schedule: dict[str, dict[str, Any]] = field(repr=False)

    def task(self, name: str, **options: Any) -> Callable[[Callable[..., Any]], Task[Any, Any]]:
        """Decorate a function to define the task `tessera.<queue>.<name>` on the app.

        Use this rather than `app.task`: it names the task so that it routes to the module's queue,
        and it keeps the task out of Celery's process-wide "shared" registry, through which a task
        defined for one app would appear in every app created after it.

        Args:
            name: The task's name within its queue, e.g. `"expire_instances"`.
            **options: Task options for Celery (`bind=True`, `ignore_result=True`, ...).

        Returns:
            The decorator; the decorated function becomes a `celery.Task`.

        """
        decorator = self.app.task(name=f"tessera.{self.queue}.{name}", shared=False, **options)
        return cast("Callable[[Callable[..., Any]], Task[Any, Any]]", decorator)

    def schedule(
        self,
        name: str,
        task: str,
        every_s: float,
        *,
        args: Sequence[Any] = (),
        expires_s: float | None = None,
    ) -> None:
        """Have beat send `task` every `every_s` seconds.

        Args:
            name: Unique name of the entry, by convention the task's name.
            task: The task to send.
            every_s: Interval in seconds.
            args: Positional arguments of each call (JSON-serialisable).
            expires_s: A call not started this long after it was sent is dropped, so calls do not
                pile up while no worker runs; defaults to `every_s`.

        Raises:
            ConfigError: Another module already scheduled an entry with this name.

        """
        if name in self._schedule:
            raise ConfigError(f"beat entry {name!r} is scheduled twice", source=JOBS_GROUP)
        self._schedule[name] = {
            "task": task,
            "schedule": every_s,
            "args": tuple(args),
            "options": {"expires": every_s if expires_s is None else expires_s},
        }


def route_task(name: str, *args: Any, **kwargs: Any) -> dict[str, str] | None:
    """Route `tessera.<service>.<task>` to the queue `<service>` (a Celery router function).

    Returns:
        `{"queue": service}`, or None for other names, which go to the default queue, `core`.

    """
    parts = name.split(".")
    if len(parts) >= 3 and parts[0] == "tessera" and parts[1]:
        return {"queue": parts[1]}
    return None


def installed_queues() -> list[str]:
    """Return the queues that have a task module installed, sorted."""
    return sorted({entry_point.name for entry_point in entry_points(group=JOBS_GROUP)})


def create_celery_app(settings: WorkerSettings, *, queues: Sequence[str] | None = None) -> Celery:
    """Build the Celery app of a worker, of beat, or of a process that only sends tasks.

    Configuration, the same for every Tessera process: Redis (`settings.redis_url`, standalone or
    a Sentinel-managed master, see `tessera.core.redis.celery_broker`) as broker and result
    backend; JSON only; tasks acknowledged after they finish (`acks_late`) and given back to the
    queue when the process running them dies (`reject_on_worker_lost`), so tasks must be
    idempotent; one task prefetched per process; `STARTED` state reported; a task held by a worker
    that vanished delivered again after `settings.visibility_timeout_s`. One queue per service:
    `route_task` sends `tessera.<service>.*` to queue `<service>`.

    Task modules: each entry point of the group `tessera.jobs` names a `register(context:
    JobContext) -> None` function; its name is the queue (the service) its tasks run on::

        [project.entry-points."tessera.jobs"]
        registry = "tessera.registry.jobs:register"

    `register` defines tasks with `@context.task(name)` and beat entries with `context.schedule`. A
    function, not tasks bound to a global app at import, so a module's tasks can read the
    settings the process was started with and importing a module has no side effects.

    Args:
        settings: Broker, intervals and timeouts.
        queues: Whose task modules to register: None for `settings.worker_queues`, or every
            installed one when that is empty too; an empty sequence for none (a process that
            only sends tasks by name with `app.send_task`).

    Returns:
        The configured app, with the tasks and beat entries of the chosen modules.

    Raises:
        ConfigError: `settings.redis_url` names a Redis Cluster (Celery cannot use one) or is
            malformed; a chosen queue has no task module installed, or a module failed to load or
            register (the original error is the `__cause__`). A worker without its tasks would
            discard their messages, so this fails the start rather than skipping the module.

    """
    chosen = _chosen_queues(settings, queues)
    app = Celery("tessera", set_as_current=False)
    visibility_timeout_s = settings.visibility_timeout_s
    broker = celery_broker(settings.redis_url)
    app.conf.update(
        broker_url=broker.url,
        result_backend=broker.url,
        result_backend_transport_options=broker.transport_options,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            **broker.transport_options,
            "visibility_timeout": visibility_timeout_s,
            # Look for abandoned tasks often enough that one comes back about
            # visibility_timeout_s after its worker vanished, not minutes later.
            "unacked_restore_interval": max(1.0, min(60.0, visibility_timeout_s / 10)),
            "unacked_restore_throttle": 1,
        },
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_track_started=True,
        worker_prefetch_multiplier=1,
        # acks_late tasks come back anyway when the broker connection is lost; cancelling them
        # at once avoids running them twice in parallel.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_default_queue=CORE_QUEUE,
        task_routes=(route_task,),
        timezone="UTC",
        enable_utc=True,
    )
    schedule: dict[str, dict[str, Any]] = {}
    for queue, register in _task_modules(chosen).items():
        try:
            register(JobContext(app, settings, queue, schedule))
        except ConfigError:
            raise
        except Exception as error:  # a broken task module must stop the worker, named
            raise ConfigError(
                f"task module of queue {queue!r} failed to register: {error!r}",
                source=JOBS_GROUP,
            ) from error
    app.conf.beat_schedule = schedule
    return app


def _chosen_queues(settings: WorkerSettings, queues: Sequence[str] | None) -> list[str]:
    if queues is not None:
        return list(queues)
    return list(settings.worker_queues) or installed_queues()


def _task_modules(queues: Sequence[str]) -> Mapping[str, Callable[[JobContext], None]]:
    found = {entry_point.name: entry_point for entry_point in entry_points(group=JOBS_GROUP)}
    missing = [queue for queue in queues if queue not in found]
    if missing:
        installed = ", ".join(sorted(found)) or "none"
        raise ConfigError(
            f"no task module for queue(s) {', '.join(missing)} (installed: {installed})",
            source=JOBS_GROUP,
        )
    modules = {}
    for queue in queues:
        entry_point = found[queue]
        try:
            register = entry_point.load()
        except Exception as error:  # an import error of any kind is the module's
            raise ConfigError(
                f"task module {entry_point.value} of queue {queue!r} failed to import: {error!r}",
                source=JOBS_GROUP,
            ) from error
        if not callable(register):
            raise ConfigError(
                f"{entry_point.value} (queue {queue!r}) is not a register(context) function",
                source=JOBS_GROUP,
            )
        modules[queue] = register
    return modules
