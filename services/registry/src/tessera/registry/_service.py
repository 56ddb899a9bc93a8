from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self

import structlog

from tessera.core import BackendError
from tessera.core.etcd import EtcdClient
from tessera.core.plugins import BALANCERS, HEALTH_CHECKS, load_plugins
from tessera.core.server import ServiceBinding
from tessera.registry._dispatch import CelerySender, JobDispatcher, job_intervals
from tessera.registry._handlers import REGISTRY_SERVICE, add_registry_servicer
from tessera.registry._leader import Leadership
from tessera.registry._lease import ProcessLease
from tessera.registry._liveness import Liveness
from tessera.registry._servicer import RegistryServicer
from tessera.registry._settings import RegistrySettings
from tessera.registry._store import InstanceStore
from tessera.registry._view import RegistryView


class RegistryService:
    """One registry process: etcd connection, process lease, view, liveness sweeper, servicer.

    Use as an async context manager; while inside, `binding` serves the Registry API (pass it to
    `tessera.core.server.serve` or `ServiceServer`). On exit the background tasks stop, the
    process lease is left to expire after its TTL (so clients have that long to move to another
    replica, which adopts their instances) and the etcd client closes.

    Args:
        settings: The registry's settings.
        etcd: An etcd client to use instead of one built from the settings; the caller closes it.

    With `settings.run_jobs` the replica also campaigns for the leadership (`leadership`) and,
    while it leads, sends the background jobs to Celery (see `tessera.registry.jobs`).

    Attributes:
        owner: This process's identity, written into the instances it owns.
        leadership: The leader election, or None without `run_jobs`.

    """

    def __init__(self, settings: RegistrySettings, etcd: EtcdClient | None = None) -> None:
        self.settings = settings
        self.owner = uuid.uuid4().hex[:12]
        self._given_etcd = etcd
        self._stack = AsyncExitStack()
        self._servicer: RegistryServicer | None = None
        self.liveness: Liveness | None = None
        self.leadership: Leadership | None = None

    @property
    def binding(self) -> ServiceBinding:
        """The Registry service, for the server kit.

        Raises:
            BackendError: The service has not been entered.

        """
        if self._servicer is None:
            raise BackendError("the registry is not started", backend="etcd", retryable=False)
        return ServiceBinding(REGISTRY_SERVICE, self._servicer, add_registry_servicer)

    async def __aenter__(self) -> Self:
        settings = self.settings
        stack = self._stack
        etcd = self._given_etcd
        if etcd is None:
            etcd = await stack.enter_async_context(EtcdClient.from_settings(settings))
        store = InstanceStore(etcd, self.owner)
        view = RegistryView(
            etcd, default_threshold=settings.protect_threshold, history=settings.watch_history
        )
        await view.start()
        stack.push_async_callback(view.stop)
        liveness: Liveness

        async def reattach(lease_id: int) -> None:
            for instance in liveness.owned():
                await store.put(instance, lease=lease_id)

        lease = ProcessLease(etcd, settings.lease_ttl_s, reattach)
        await lease.start()
        stack.push_async_callback(lease.close)
        liveness = Liveness(settings, view, store, lambda: lease.id)
        self.liveness = liveness
        self._servicer = RegistryServicer(
            settings,
            view,
            store,
            liveness,
            lease,
            load_plugins(BALANCERS),
            load_plugins(HEALTH_CHECKS).loaded.keys(),
        )
        jobs: list[tuple[str, Coroutine[Any, Any, None]]] = [
            ("registry-lease", lease.run()),
            ("registry-sweep", liveness.run()),
        ]
        if settings.run_jobs:
            leadership = Leadership(etcd, self.owner, lease, settings.election_interval_s)
            self.leadership = leadership
            # Resigning on exit hands the jobs to another replica within one campaign interval
            # instead of one lease TTL.
            stack.push_async_callback(leadership.resign)
            sender = CelerySender(settings)
            stack.callback(sender.close)
            dispatcher = JobDispatcher(leadership, job_intervals(settings), sender)
            jobs += [("registry-election", leadership.run()), ("registry-jobs", dispatcher.run())]
        for name, job in jobs:
            task = asyncio.create_task(job, name=name)
            stack.push_async_callback(_cancel, task)
        structlog.get_logger(__name__).info("registry_started", owner=self.owner)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stack.aclose()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
