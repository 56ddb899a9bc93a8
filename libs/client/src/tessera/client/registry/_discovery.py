from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import structlog

from tessera.client._lifecycle import AsyncClosing
from tessera.client.registry._client import RegistryClient
from tessera.client.registry._eligibility import served_set, to_endpoint
from tessera.core import TesseraError, UnavailableError
from tessera.core.plugins import BALANCERS, Balancer, Endpoint, LoadAwareBalancer, load_plugins
from tessera.proto.registry.v1 import registry_pb2

_RETRY_S = 0.2
_MAX_RETRY_S = 2.0


class ServiceWatch(AsyncClosing):
    """A discovery cache for one service, fed by Watch, that picks with a balancer plugin.

    The cache follows the service's instances from a snapshot and then each change; when the
    stream breaks it moves to the next replica and resumes from the next revision, so no change
    is missed or applied twice. Picks happen in memory, never over the network.

    Push-empty protection: when an update would leave no eligible instance although there were
    some (and the service is not in maintenance), the cache keeps serving the previous set and
    sets `stale`, because an empty push is more often a registry fault than a real outage.

    Concurrency: one event loop for the watch; `pick` may also be called from other threads.

    Args:
        client: The registry client.
        namespace: The service's namespace.
        service: The service.
        selector: Label selector over instance metadata.
        balancer: Name of a `tessera.balancers` plugin.

    Raises:
        PluginError: The balancer is not installed or failed to load.

    """

    def __init__(
        self,
        client: RegistryClient,
        namespace: str,
        service: str,
        *,
        selector: str = "",
        balancer: str = "round_robin",
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._service = service
        self._selector = selector
        self._balancer: Balancer = load_plugins(BALANCERS).get(balancer).create()
        self._load_aware = isinstance(self._balancer, LoadAwareBalancer)
        self._instances: dict[str, registry_pb2.Instance] = {}
        # Swapped as one tuple so a pick in another thread never pairs old and new halves.
        self._served: tuple[tuple[Endpoint, ...], dict[str, registry_pb2.Instance]] = ((), {})
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self.revision = 0
        self.protected = False
        self.maintenance = False
        self.stale = False
        self.updates = 0

    @property
    def instances(self) -> dict[str, registry_pb2.Instance]:
        """Every selected instance by id, eligible or not (do not mutate)."""
        return self._instances

    @property
    def endpoints(self) -> Sequence[Endpoint]:
        """The eligible instances as balancer endpoints."""
        return self._served[0]

    async def start(self, timeout_s: float = 10.0) -> ServiceWatch:
        """Start following the service and wait for the first snapshot.

        Raises:
            TimeoutError: No snapshot arrived within `timeout_s`.

        """
        self._task = asyncio.create_task(self._follow(), name=f"watch-{self._service}")
        await self.wait_for(lambda watch: watch.updates > 0, timeout_s)
        return self

    async def close(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def __aenter__(self) -> ServiceWatch:
        # Unlike other closables, entering a watch starts it (and waits for a first snapshot).
        return await self.start()

    def pick(self, key: bytes | None = None) -> registry_pb2.Instance:
        """Choose an instance for one call.

        Call `complete` with it when the call ends if the balancer is load aware (harmless
        otherwise).

        Raises:
            UnavailableError: No eligible instance.

        """
        endpoints, by_id = self._served
        if not endpoints:
            raise UnavailableError(f"{self._namespace}/{self._service} has no eligible instance")
        return by_id[self._balancer.pick(endpoints, key).id]

    def pick_endpoint(self, key: bytes | None = None) -> Endpoint:
        """Like `pick`, returning the balancer's `Endpoint` (no instance lookup).

        Raises:
            UnavailableError: No eligible instance.

        """
        return self._balancer.pick(self._served[0], key)

    def complete(self, endpoint: Endpoint) -> None:
        """Report that a call to a picked endpoint ended (for load-aware balancers)."""
        if self._load_aware:
            self._balancer.complete(endpoint)  # type: ignore[attr-defined]  # checked at init

    async def wait_for(
        self, predicate: Callable[[ServiceWatch], bool], timeout_s: float = 10.0
    ) -> None:
        """Wait until `predicate(self)` holds (checked now and after every update).

        Raises:
            TimeoutError: It did not hold within `timeout_s`.

        """
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    async def _follow(self) -> None:
        log = structlog.get_logger(__name__)
        delay = _RETRY_S
        while True:
            start = self.revision + 1 if self.updates else 0
            try:
                async for response in self._client.watch(
                    self._namespace, self._service, self._selector, start_revision=start
                ):
                    await self._apply(response)
                    delay = _RETRY_S
            except TesseraError as error:
                log.info("registry_watch_resume", revision=self.revision, error=error.message)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_RETRY_S)

    async def _apply(self, response: registry_pb2.WatchResponse) -> None:
        if response.reset:
            self._instances = {}
        for event in response.events:
            if event.type == registry_pb2.InstanceEvent.TYPE_DELETE:
                self._instances.pop(event.instance.id, None)
            else:
                self._instances[event.instance.id] = event.instance
        self.revision = response.revision
        self.maintenance = response.maintenance
        served = served_set(
            self._instances.values(),
            maintenance=response.maintenance,
            protect_threshold=response.protect_threshold,
        )
        self.protected = served.protected
        if not served.instances and self._served[0] and not response.maintenance:
            self.stale = True
        else:
            self.stale = False
            self._served = (
                tuple(to_endpoint(i) for i in served.instances),
                {i.id: i for i in served.instances},
            )
        self.updates += 1
        async with self._changed:
            self._changed.notify_all()
