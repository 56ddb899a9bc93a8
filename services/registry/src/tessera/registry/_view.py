from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import structlog

from tessera.client.registry import ServedSet, served_set
from tessera.core import BackendError
from tessera.core.etcd import EtcdClient, EventType, Relist, Snapshot, WatchEvent
from tessera.proto.registry.v1 import registry_pb2
from tessera.registry._keys import ROOT, ServiceName, instance_key, parse_key
from tessera.registry._selector import Selector

Instance = registry_pb2.Instance

#: Sent to a subscriber that fell too far behind: it must start again from a snapshot.
RESET = object()

#: What a subscriber receives: a serialized `WatchResponse`, built once per change and shared by
#: every subscriber it reaches, or RESET.
Delivery = bytes | object

_SUBSCRIBER_QUEUE = 1024
_WATCH_RESTART_S = 1.0


@dataclass(slots=True)
class ServiceState:
    """Everything the view knows about one service.

    Attributes:
        instances: Instances by id.
        maintenance: The service-wide maintenance switch.
        protect_threshold: The service's own threshold, or None to use the registry default.
        generation: Bumped on every change, so caches of derived data know when to rebuild.

    """

    instances: dict[str, registry_pb2.Instance] = field(default_factory=dict)
    maintenance: bool = False
    protect_threshold: float | None = None
    generation: int = 0


@dataclass(frozen=True, slots=True)
class Change:
    """One change the view applied, kept so a Watch can resume from its revision."""

    revision: int
    name: ServiceName
    old: registry_pb2.Instance | None
    new: registry_pb2.Instance | None


class Outbox:
    """The responses waiting for one subscriber, in order, taken all at once by its writer.

    `offer` never blocks: the view calls it for every subscriber a change reaches, so it only
    appends and, when the writer is idle, wakes it with one future (cheaper than an
    `asyncio.Queue`, whose every `get` and `put` pays for generality a single reader does not
    need). A subscriber that falls more than `limit` responses behind gets RESET instead of a
    growing backlog.

    Concurrency: one event loop, one task calling `take` at a time.
    """

    __slots__ = ("_items", "_limit", "_waiter")

    def __init__(self, limit: int = _SUBSCRIBER_QUEUE) -> None:
        self._items: list[Delivery] = []
        self._limit = limit
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, response: Delivery) -> None:
        """Append a response (RESET instead of everything waiting once `limit` is exceeded)."""
        if len(self._items) >= self._limit:
            self._items = [RESET]
        else:
            self._items.append(response)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def take(self) -> list[Delivery]:
        """Wait for at least one response; return every waiting one, oldest first."""
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        items, self._items = self._items, []
        return items


@dataclass(eq=False, slots=True)
class Subscription:
    """One Watch: the service and selector it follows, and the responses waiting for it.

    The outbox holds serialized `WatchResponse` messages (or RESET): a change fanned out to a
    thousand watchers is serialized once, not once per watcher.
    """

    name: ServiceName
    selector: Selector
    outbox: Outbox = field(default_factory=Outbox)

    def offer(self, response: bytes) -> None:
        """Queue a response; a subscriber too far behind gets RESET instead of growing memory."""
        self.outbox.offer(response)


class RegistryView:
    """The registry's keyspace held in memory, kept current by one etcd watch.

    Every replica keeps its own view; List, Watch and Resolve read it, so reads never touch etcd.
    Changes are kept (up to `history` of them) so a Watch can resume from a revision.

    Concurrency: one event loop; methods that do not await are atomic with respect to the watch.

    Args:
        etcd: Client to read and watch the keyspace with.
        default_threshold: Protection threshold of services without their own.
        history: How many changes to keep for resuming watches.

    """

    def __init__(self, etcd: EtcdClient, *, default_threshold: float, history: int) -> None:
        self._etcd = etcd
        self._default_threshold = default_threshold
        self._services: dict[ServiceName, ServiceState] = {}
        self._changes: deque[Change] = deque(maxlen=history)
        self._history_start = 1
        self._revision = 0
        self._subscribers: dict[ServiceName, set[Subscription]] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._served: dict[ServiceName, tuple[int, ServedSet]] = {}

    @property
    def revision(self) -> int:
        """The last etcd revision the view has applied."""
        return self._revision

    async def start(self) -> None:
        """Load the keyspace and follow it in a background task.

        Raises:
            BackendError: etcd could not be read.

        """
        snapshot = await self._etcd.get_prefix(ROOT)
        self._load(snapshot)
        self._history_start = snapshot.revision + 1
        self._task = asyncio.create_task(self._follow(), name="registry-view")

    async def stop(self) -> None:
        """Stop following etcd."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait_for(self, revision: int, timeout_s: float = 5.0) -> None:
        """Wait until the view has applied `revision` (read-your-writes after a write).

        Raises:
            BackendError: The watch did not deliver it within `timeout_s` (retryable).

        """
        if self._revision >= revision:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, waiter))
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        except TimeoutError:
            raise BackendError(
                f"registry view did not reach revision {revision}", backend="etcd"
            ) from None

    def service(self, name: ServiceName) -> ServiceState:
        """Return the state of a service (empty if unknown; do not mutate)."""
        return self._services.get(name) or ServiceState()

    def threshold(self, state: ServiceState) -> float:
        """Return the protection threshold in force for a service."""
        if state.protect_threshold is None:
            return self._default_threshold
        return state.protect_threshold

    def instance(self, name: ServiceName, instance_id: str) -> registry_pb2.Instance | None:
        """Return one instance, or None."""
        state = self._services.get(name)
        return None if state is None else state.instances.get(instance_id)

    def instances(self) -> Iterator[tuple[ServiceName, registry_pb2.Instance]]:
        """Every instance of every service."""
        for name, state in list(self._services.items()):
            for instance in list(state.instances.values()):
                yield name, instance

    def service_names(self, namespace: str = "") -> list[ServiceName]:
        """Return the services with at least one instance, sorted; all namespaces when empty."""
        return sorted(
            name
            for name, state in self._services.items()
            if state.instances and (not namespace or name.namespace == namespace)
        )

    def service_response(self, name: ServiceName, selector: Selector) -> registry_pb2.WatchResponse:
        """Build a snapshot of the selected instances of one service (`reset` set)."""
        state = self.service(name)
        events = [
            registry_pb2.InstanceEvent(type=registry_pb2.InstanceEvent.TYPE_PUT, instance=i)
            for i in sorted(state.instances.values(), key=lambda i: i.id)
            if selector.matches(labels(i))
        ]
        return self._response(name, state, events, reset=True, revision=self._revision)

    def subscribe(self, name: ServiceName, selector: Selector, start_revision: int) -> Subscription:
        """Follow the selected instances of one service.

        The subscription's queue first holds either the changes since `start_revision`, when they
        are still in the history, or a snapshot (reset); then every later change that touches
        the selection, and only those.
        """
        subscription = Subscription(name, selector)
        if start_revision > 0 and self._history_start <= start_revision <= self._revision + 1:
            for change in self._changes:
                if change.revision >= start_revision and change.name == name:
                    response = self._change_response(subscription, change)
                    if response is not None:
                        subscription.offer(response)
        else:
            subscription.offer(self.service_response(name, selector).SerializeToString())
        self._subscribers.setdefault(name, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering to a subscription."""
        subscribers = self._subscribers.get(subscription.name)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.name]

    async def _follow(self) -> None:
        log = structlog.get_logger(__name__)
        while True:
            try:
                async for item in self._etcd.watch_prefix(ROOT, start_revision=self._revision + 1):
                    if isinstance(item, Relist):
                        self._relist(item.snapshot)
                    else:
                        self._apply(item)
            except BackendError as error:
                # The watch gives up only after its retry budget; the view must not: keep the
                # last state and try again from the revision it holds.
                log.warning("registry_view_watch_failed", error=error.message)
                await asyncio.sleep(_WATCH_RESTART_S)

    def _load(self, snapshot: Snapshot) -> None:
        for item in snapshot.items:
            self._set(item.key, item.value, item.mod_revision)
        self._advance(snapshot.revision)

    def _relist(self, snapshot: Snapshot) -> None:
        present = {item.key for item in snapshot.items}
        known = [
            key
            for name, state in self._services.items()
            for key in (instance_key(name, i) for i in state.instances)
        ]
        for key in known:
            if key not in present:
                self._record(self._set(key, b"", snapshot.revision, deleted=True))
        for item in snapshot.items:
            self._record(self._set(item.key, item.value, item.mod_revision, relist=True))
        self._advance(snapshot.revision)

    def _apply(self, event: WatchEvent) -> None:
        deleted = event.type is EventType.DELETE
        self._record(self._set(event.key, event.value, event.revision, deleted=deleted))
        self._advance(event.revision)

    def _set(
        self,
        key: bytes,
        value: bytes,
        revision: int,
        *,
        deleted: bool = False,
        relist: bool = False,
    ) -> Change | None:
        parsed = parse_key(key)
        if parsed is None:
            return None
        kind, name, instance_id = parsed
        state = self._services.setdefault(name, ServiceState())
        if kind == "services":
            config = {} if deleted else json.loads(value)
            maintenance = bool(config.get("maintenance", False))
            threshold = config.get("protect_threshold")
            if (maintenance, threshold) == (state.maintenance, state.protect_threshold):
                return None
            state.maintenance, state.protect_threshold = maintenance, threshold
            state.generation += 1
            return Change(revision, name, None, None)
        old = state.instances.get(instance_id)
        new: registry_pb2.Instance | None = None
        if deleted:
            if old is None:
                return None
            del state.instances[instance_id]
        else:
            new = registry_pb2.Instance.FromString(value)
            new.revision = revision
            if relist and old is not None and old.revision == revision:
                return None
            state.instances[instance_id] = new
        state.generation += 1
        return Change(revision, name, old, new)

    def _record(self, change: Change | None) -> None:
        if change is None:
            return
        if len(self._changes) == self._changes.maxlen:
            self._history_start = self._changes[0].revision + 1
        self._changes.append(change)
        subscribers = self._subscribers.get(change.name)
        if not subscribers:
            return
        # Watchers of one service mostly share a few selectors: each distinct selector is
        # evaluated once per change, and each distinct outcome serialized once.
        shared: dict[str, bytes] = {}
        by_selector: dict[Selector, bytes | None] = {}
        for subscription in list(subscribers):
            selector = subscription.selector
            if selector in by_selector:
                response = by_selector[selector]
            else:
                response = by_selector[selector] = self._change_response(
                    subscription, change, shared
                )
            if response is not None:
                subscription.offer(response)

    def _advance(self, revision: int) -> None:
        self._revision = max(self._revision, revision)
        if self._waiters:
            waiting = []
            for wanted, waiter in self._waiters:
                if wanted <= self._revision:
                    if not waiter.done():
                        waiter.set_result(None)
                else:
                    waiting.append((wanted, waiter))
            self._waiters = waiting

    def _change_response(
        self,
        subscription: Subscription,
        change: Change,
        shared: dict[str, bytes] | None = None,
    ) -> bytes | None:
        """Serialize what one subscriber sees of a change, or None when its selection is untouched.

        A change looks the same to every subscriber it touches in the same way (a put, or a
        delete, or new service flags), so `shared` memoizes the response by that outcome: a
        change fanned out to a thousand watchers builds and serializes at most three messages.
        """
        if change.old is None and change.new is None:  # the service's configuration changed
            outcome = "config"
        else:
            selector = subscription.selector
            if change.new is not None and selector.matches(labels(change.new)):
                outcome = "put"
            elif change.old is not None and selector.matches(labels(change.old)):
                outcome = "delete"
            else:
                return None
        if shared is not None and outcome in shared:
            return shared[outcome]
        events = []
        if outcome == "put":
            events.append(
                registry_pb2.InstanceEvent(
                    type=registry_pb2.InstanceEvent.TYPE_PUT, instance=change.new
                )
            )
        elif outcome == "delete" and change.old is not None:
            old = change.old
            events.append(
                registry_pb2.InstanceEvent(
                    type=registry_pb2.InstanceEvent.TYPE_DELETE,
                    instance=registry_pb2.Instance(
                        namespace=old.namespace, service=old.service, id=old.id
                    ),
                )
            )
        state = self.service(change.name)
        message = self._response(change.name, state, events, reset=False, revision=change.revision)
        response = message.SerializeToString()
        if shared is not None:
            shared[outcome] = response
        return response

    def _response(
        self,
        name: ServiceName,
        state: ServiceState,
        events: list[registry_pb2.InstanceEvent],
        *,
        reset: bool,
        revision: int,
    ) -> registry_pb2.WatchResponse:
        return registry_pb2.WatchResponse(
            reset=reset,
            revision=revision,
            events=events,
            maintenance=state.maintenance,
            protect_threshold=self.threshold(state),
            protected=self.served(name).protected,
        )

    def served(self, name: ServiceName) -> ServedSet:
        """Return the eligible instances of a service (cached until the service changes)."""
        state = self.service(name)
        cached = self._served.get(name)
        if cached is not None and cached[0] == state.generation:
            return cached[1]
        served = served_set(
            state.instances.values(),
            maintenance=state.maintenance,
            protect_threshold=self.threshold(state),
        )
        self._served[name] = (state.generation, served)
        return served


def labels(instance: registry_pb2.Instance) -> dict[str, str]:
    """Return the labels a selector matches: metadata, with `zone` and `region` as defaults."""
    found = {"zone": instance.zone, "region": instance.region}
    found.update(instance.metadata)
    return found
