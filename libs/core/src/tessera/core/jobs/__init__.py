"""Background jobs: one Celery app factory, task modules found through entry points, heartbeat.

Each service keeps its tasks in a module whose `register(context: JobContext)` function defines
them on `context.app` and adds beat entries with `context.schedule`; the module is registered
under the entry-point group `tessera.jobs` with the service's name, which is also its queue.
Tasks named `tessera.<service>.<task>` run on queue `<service>`. Tasks are idempotent: they are
acknowledged after they finish, and run again when the process running them dies.

Processes: `tessera-worker -Q registry,core` (or `python -m tessera.core.jobs worker ...`) runs a
worker, `tessera-beat` (`python -m tessera.core.jobs beat ...`) the scheduler. A process that only
sends tasks builds `create_celery_app(settings, queues=())` and calls `app.send_task(name, ...)`.

Core's own job is the heartbeat: beat schedules `tessera.core.heartbeat` every
`heartbeat_interval_s` on queue `core`, the worker writes the Redis key `tessera:heartbeat`, and
`read_heartbeat` tells `tessera status` whether beat and a worker are alive.
"""

from tessera.core.jobs._app import (
    CORE_QUEUE,
    JOBS_GROUP,
    JobContext,
    create_celery_app,
    installed_queues,
    route_task,
)
from tessera.core.jobs._commands import beat_main, worker_main
from tessera.core.jobs._heartbeat import (
    HEARTBEAT_KEY,
    HEARTBEAT_TASK,
    Heartbeat,
    read_heartbeat,
)
from tessera.core.jobs._settings import WorkerSettings

__all__ = [
    "CORE_QUEUE",
    "HEARTBEAT_KEY",
    "HEARTBEAT_TASK",
    "JOBS_GROUP",
    "Heartbeat",
    "JobContext",
    "WorkerSettings",
    "beat_main",
    "create_celery_app",
    "installed_queues",
    "read_heartbeat",
    "route_task",
    "worker_main",
]
