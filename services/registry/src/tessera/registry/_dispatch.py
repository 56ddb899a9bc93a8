from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

import structlog
from kombu.exceptions import KombuError

from tessera.core.jobs import WorkerSettings, create_celery_app
from tessera.registry._leader import Leadership
from tessera.registry._settings import RegistrySettings

#: Sends one task: (task name, term, seconds after which an unstarted call is dropped).
Send = Callable[[str, int, float], Awaitable[None]]


def job_intervals(settings: RegistrySettings) -> dict[str, float]:
    """Return the registry's periodic tasks and their intervals in seconds."""
    return {
        "tessera.registry.probe": settings.probe_interval_s,
        "tessera.registry.reap": settings.reap_interval_s,
        "tessera.registry.stats": settings.stats_interval_s,
    }


class CelerySender:
    """Sends registry tasks to the Celery broker without blocking the event loop.

    Publishing through kombu blocks, so it runs on one private thread (one, so the producer
    pool is never used from two threads at once).

    Args:
        settings: The broker is `settings.redis_url`.

    """

    def __init__(self, settings: RegistrySettings) -> None:
        self._app = create_celery_app(
            WorkerSettings(redis_url=settings.redis_url, service_name=settings.service_name),
            queues=(),
        )
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="registry-jobs")

    async def __call__(self, task: str, term: int, expires_s: float) -> None:
        """Send `task(term)`; it is dropped when no worker starts it within `expires_s`."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self._thread,
            lambda: self._app.send_task(task, args=[term], expires=expires_s),
        )

    def close(self) -> None:
        """Stop the sending thread and release the broker connections."""
        self._thread.shutdown(wait=True)
        self._app.close()


class JobDispatcher:
    """Sends each periodic task on its interval while this replica leads.

    The leader is the registry's only scheduler, so each tick runs once however many replicas
    there are.

    Each task carries the leader's term; the task does nothing when the term is no longer
    current (see `Leadership`).

    Args:
        leadership: Whether, and with which term, this replica leads.
        intervals: Task name -> seconds between two sends.
        send: Sends one task.

    """

    def __init__(self, leadership: Leadership, intervals: Mapping[str, float], send: Send) -> None:
        self._leadership = leadership
        self._intervals = dict(intervals)
        self._send = send

    async def run(self) -> None:
        """Send the tasks forever; cancel to stop."""
        async with asyncio.TaskGroup() as group:
            for task, interval_s in self._intervals.items():
                group.create_task(self._every(task, interval_s), name=f"dispatch-{task}")

    async def _every(self, task: str, interval_s: float) -> None:
        log = structlog.get_logger(__name__)
        while True:
            await asyncio.sleep(interval_s)
            term = self._leadership.term
            if term is None:
                continue
            try:
                await self._send(task, term, interval_s)
            except (KombuError, OSError) as error:
                # The broker is down: the next tick tries again; probing pauses meanwhile.
                log.warning("registry_job_send_failed", task=task, error=str(error))
