from __future__ import annotations

import asyncio
import contextlib
import math
from collections import defaultdict
from collections.abc import Callable, Iterable

import structlog

from tessera.core import NotFoundError, TesseraError
from tessera.proto.registry.v1 import registry_pb2
from tessera.registry._keys import ServiceName
from tessera.registry._settings import RegistrySettings
from tessera.registry._store import InstanceStore
from tessera.registry._view import RegistryView

#: One ephemeral instance: its service and id.
InstanceId = tuple[ServiceName, str]


class Liveness:
    """Heartbeats of the ephemeral instances this process owns, held in memory only.

    A beat costs a dictionary write: etcd is written only when an instance changes state
    (healthy -> unhealthy -> deleted, or adopted from another replica). A sweep every
    `sweep_interval_s` applies the timers; while a service is protected (its healthy share is
    below the threshold) none of its instances is deleted, and each sweep deletes at most
    `max_evictions_per_sweep` of a service's instances.

    Concurrency: one event loop.

    Args:
        settings: The timers.
        view: The registry view, to read instances and protection.
        store: Where state changes are written.
        lease: Returns the current process lease ID (it changes when a lost lease is replaced).

    """

    def __init__(
        self,
        settings: RegistrySettings,
        view: RegistryView,
        store: InstanceStore,
        lease: Callable[[], int],
    ) -> None:
        self._settings = settings
        self._view = view
        self._store = store
        self._lease = lease
        self._last_beat: dict[InstanceId, float] = {}

    @property
    def tracked(self) -> int:
        """How many instances this process tracks."""
        return len(self._last_beat)

    def track(self, name: ServiceName, instance_id: str) -> None:
        """Start the timers of an instance just registered here."""
        self._last_beat[(name, instance_id)] = asyncio.get_running_loop().time()

    def forget(self, name: ServiceName, instance_id: str) -> None:
        """Stop tracking an instance (deregistered)."""
        self._last_beat.pop((name, instance_id), None)

    def owned(self) -> list[registry_pb2.Instance]:
        """Return the instances this process owns, as the view has them."""
        found = (self._view.instance(name, i) for name, i in self._last_beat)
        return [i for i in found if i is not None and i.owner == self._store.owner]

    async def beat(
        self, refs: Iterable[registry_pb2.InstanceRef]
    ) -> list[registry_pb2.InstanceRef]:
        """Record one heartbeat for each instance.

        An instance owned by another replica (its client failed over to this one) is adopted: it
        moves to this process's lease. An unhealthy instance turns healthy again.

        Returns:
            The instances the registry does not know (or that are persistent): the client must
            register them again.

        Raises:
            BackendError: etcd failed while adopting or reviving an instance.

        """
        now = asyncio.get_running_loop().time()
        unknown = []
        for ref in refs:
            name = ServiceName(ref.namespace, ref.service)
            instance = self._view.instance(name, ref.id)
            if instance is None or not instance.ephemeral:
                unknown.append(ref)
                continue
            self._last_beat[(name, ref.id)] = now
            if instance.owner != self._store.owner or not instance.healthy:
                try:
                    await self._claim(name, ref.id)
                except NotFoundError:
                    self._last_beat.pop((name, ref.id), None)
                    unknown.append(ref)
        return unknown

    async def run(self) -> None:
        """Sweep forever; cancel to stop."""
        while True:
            await asyncio.sleep(self._settings.sweep_interval_s)
            try:
                await self.sweep()
            except TesseraError as error:
                structlog.get_logger(__name__).warning("registry_sweep_failed", error=error.message)

    async def sweep(self) -> None:
        """Apply the timers once: mark silent instances unhealthy, delete long-silent ones."""
        now = asyncio.get_running_loop().time()
        settings = self._settings
        evictions: dict[ServiceName, int] = defaultdict(int)
        caps: dict[ServiceName, int] = {}
        for (name, instance_id), last in list(self._last_beat.items()):
            instance = self._view.instance(name, instance_id)
            if instance is None or instance.owner != self._store.owner:
                # Deleted, or adopted by another replica: its timers live there now.
                self._last_beat.pop((name, instance_id), None)
                continue
            silent = now - last
            if silent >= settings.delete_after_s:
                if self._view.served(name).protected:
                    continue
                if name not in caps:
                    # Fixed at the first eviction: the view shrinks as this sweep deletes.
                    total = len(self._view.service(name).instances)
                    caps[name] = max(1, math.floor(total * settings.max_evictions_per_sweep))
                if evictions[name] >= caps[name]:
                    continue
                evictions[name] += 1
                self._last_beat.pop((name, instance_id), None)
                structlog.get_logger(__name__).info(
                    "registry_instance_expired", service=str(name), id=instance_id
                )
                with contextlib.suppress(NotFoundError):
                    # Wait for the view so the next decision (and a reader) sees the delete.
                    await self._view.wait_for(await self._store.delete(name, instance_id))
            elif silent >= settings.unhealthy_after_s and instance.healthy:
                await self._mark(name, instance_id, healthy=False)

    async def _claim(self, name: ServiceName, instance_id: str) -> None:
        owner = self._store.owner

        def claim(instance: registry_pb2.Instance) -> None:
            instance.owner = owner
            instance.healthy = True

        revision = await self._store.update(name, instance_id, claim, lease=self._lease())
        # Later beats read the owner from the view: let it catch up so they do not claim again.
        await self._view.wait_for(revision)

    async def _mark(self, name: ServiceName, instance_id: str, *, healthy: bool) -> None:
        def mark(instance: registry_pb2.Instance) -> None:
            instance.healthy = healthy

        try:
            # Wait for the view, or the next sweep would read the old flag and write it again.
            await self._view.wait_for(await self._store.update(name, instance_id, mark))
        except NotFoundError:
            self._last_beat.pop((name, instance_id), None)
