from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass

from tessera.client.registry import to_endpoint
from tessera.core import FieldViolation, UnavailableError, ValidationError
from tessera.core.plugins import Balancer, Endpoint, LoadAwareBalancer, PluginSet
from tessera.core.server import ServicerContext
from tessera.proto.registry.v1 import registry_pb2, registry_pb2_grpc
from tessera.registry import _validation as validate
from tessera.registry._keys import ServiceName
from tessera.registry._lease import ProcessLease
from tessera.registry._liveness import Liveness
from tessera.registry._selector import Selector
from tessera.registry._settings import RegistrySettings
from tessera.registry._store import InstanceStore
from tessera.registry._view import RegistryView, Subscription, labels

DEFAULT_BALANCER = "round_robin"

#: Most registrations one RegisterBatch carries.
MAX_BATCH_REGISTRATIONS = 1000

#: List responses kept per (service, selector) until the service changes.
_CACHED_LISTS = 1024


@dataclass(slots=True)
class _Picker:
    """A balancer and the candidates it was last given, for one (service, selector, balancer)."""

    generation: int
    endpoints: tuple[Endpoint, ...]
    instances: dict[str, registry_pb2.Instance]
    protected: bool
    balancer: Balancer


class RegistryServicer(registry_pb2_grpc.RegistryServicer):
    """The `tessera.registry.v1.Registry` service.

    Writes go to etcd through the store and return once this replica's view has applied them,
    so a caller reads its own writes from the same replica. Reads come from the view.

    Args:
        settings: Timers announced to clients.
        view: The in-memory keyspace.
        store: Where writes go.
        liveness: Heartbeat tracking of ephemeral instances.
        lease: The process lease ephemeral instances are attached to.
        balancers: The installed balancer plugins, for Resolve.
        health_checks: Names of the installed health-check plugins, to validate Register.

    """

    def __init__(
        self,
        settings: RegistrySettings,
        view: RegistryView,
        store: InstanceStore,
        liveness: Liveness,
        lease: ProcessLease,
        balancers: PluginSet[Balancer],
        health_checks: Collection[str],
    ) -> None:
        self._settings = settings
        self._view = view
        self._store = store
        self._liveness = liveness
        self._lease = lease
        self._balancers = balancers
        self._health_checks = frozenset(health_checks)
        self._pickers: dict[tuple[ServiceName, str, str], _Picker] = {}
        self._lists: dict[tuple[ServiceName, str], tuple[int, registry_pb2.ListResponse]] = {}

    async def Register(  # noqa: N802 (gRPC method names are CamelCase)
        self, request: registry_pb2.RegisterRequest, context: ServicerContext
    ) -> registry_pb2.RegisterResponse:
        """Validate and store one instance; ephemeral ones start their timers here."""
        return (await self._register([self._prepare(request.instance)]))[0]

    async def RegisterBatch(  # noqa: N802 (gRPC method names are CamelCase)
        self, request: registry_pb2.RegisterBatchRequest, context: ServicerContext
    ) -> registry_pb2.RegisterBatchResponse:
        """Validate every instance, then store them all as Register would, in order."""
        count = len(request.registrations)
        if not 0 < count <= MAX_BATCH_REGISTRATIONS:
            raise ValidationError.for_field(
                "registrations", f"must hold 1 to {MAX_BATCH_REGISTRATIONS:,} registrations"
            )
        prepared = []
        violations: list[FieldViolation] = []
        for index, registration in enumerate(request.registrations):
            try:
                prepared.append(self._prepare(registration.instance))
            except ValidationError as error:
                violations.extend(
                    FieldViolation(f"registrations[{index}].{v.field}", v.description)
                    for v in error.violations
                )
        if violations:
            raise ValidationError(violations)
        return registry_pb2.RegisterBatchResponse(results=await self._register(prepared))

    def _prepare(self, given: registry_pb2.Instance) -> tuple[ServiceName, registry_pb2.Instance]:
        """Validate an instance to register and return the copy to store (defaults filled in)."""
        name = validate.registration(given, self._health_checks)
        instance = registry_pb2.Instance()
        instance.CopyFrom(given)
        instance.id = instance.id or uuid.uuid4().hex
        instance.weight = instance.weight or 1.0
        instance.status = instance.status or registry_pb2.SERVING_STATUS_SERVING
        # A persistent instance with an active check starts unhealthy until a probe passes, as
        # Consul's new checks start critical; everything else starts healthy.
        instance.healthy = instance.ephemeral or not instance.health_check.kind
        instance.revision = 0
        instance.owner = self._store.owner if instance.ephemeral else ""
        return name, instance

    async def _register(
        self, prepared: list[tuple[ServiceName, registry_pb2.Instance]]
    ) -> list[registry_pb2.RegisterResponse]:
        lease = self._lease.id
        revisions = await self._store.put_many(
            [(instance, lease if instance.ephemeral else 0) for _, instance in prepared]
        )
        for name, instance in prepared:
            if instance.ephemeral:
                self._liveness.track(name, instance.id)
        await self._view.wait_for(max(revisions))
        interval = self._settings.heartbeat_interval_s
        return [
            registry_pb2.RegisterResponse(
                id=instance.id, revision=revision, heartbeat_interval_s=interval
            )
            for (_, instance), revision in zip(prepared, revisions, strict=True)
        ]

    async def Deregister(  # noqa: N802 (gRPC method names are CamelCase)
        self, request: registry_pb2.DeregisterRequest, context: ServicerContext
    ) -> registry_pb2.DeregisterResponse:
        """Delete one instance."""
        name = validate.instance_ref(request.instance)
        revision = await self._store.delete(name, request.instance.id)
        self._liveness.forget(name, request.instance.id)
        await self._view.wait_for(revision)
        return registry_pb2.DeregisterResponse(revision=revision)

    async def SetStatus(  # noqa: N802 (gRPC method names are CamelCase)
        self, request: registry_pb2.SetStatusRequest, context: ServicerContext
    ) -> registry_pb2.SetStatusResponse:
        """Change the serving status of one instance."""
        name = validate.instance_ref(request.instance)
        status = request.status
        if status not in registry_pb2.ServingStatus.values() or status == 0:
            raise ValidationError.for_field("status", "must be SERVING, DRAINING or TERMINATING")

        def set_status(instance: registry_pb2.Instance) -> None:
            instance.status = status

        revision = await self._store.update(name, request.instance.id, set_status)
        await self._view.wait_for(revision)
        return registry_pb2.SetStatusResponse(revision=revision)

    async def ConfigureService(  # noqa: N802 (gRPC method names are CamelCase)
        self, request: registry_pb2.ConfigureServiceRequest, context: ServicerContext
    ) -> registry_pb2.ConfigureServiceResponse:
        """Set a service's maintenance switch and protection threshold."""
        name = validate.service_name(request.namespace, request.service)
        threshold = validate.threshold(request.protect_threshold)
        revision = await self._store.configure(
            name, maintenance=request.maintenance, threshold=threshold
        )
        await self._view.wait_for(revision)
        return registry_pb2.ConfigureServiceResponse(revision=revision)

    async def KeepAlive(  # noqa: N802 (gRPC method names are CamelCase)
        self,
        request_iterator: AsyncIterator[registry_pb2.KeepAliveRequest],
        context: ServicerContext,
    ) -> AsyncIterator[registry_pb2.KeepAliveResponse]:
        """Answer each batch of heartbeats with the instances to register again."""
        async for request in request_iterator:
            for index, ref in enumerate(request.instances):
                validate.instance_ref(ref, prefix=f"instances[{index}].")
            unknown = await self._liveness.beat(request.instances)
            yield registry_pb2.KeepAliveResponse(unknown=unknown)

    async def List(  # noqa: N802 (gRPC method names are CamelCase)
        self, request: registry_pb2.ListRequest, context: ServicerContext
    ) -> registry_pb2.ListResponse:
        """Return the selected instances of one service at the view's revision."""
        name = validate.service_name(request.namespace, request.service)
        key = (name, request.selector)
        generation = self._view.service(name).generation
        cached = self._lists.get(key)
        if cached is None or cached[0] != generation:
            selector = Selector.parse(request.selector)
            snapshot = self._view.service_response(name, selector)
            response = registry_pb2.ListResponse(
                service=registry_pb2.ServiceView(
                    instances=[event.instance for event in snapshot.events],
                    maintenance=snapshot.maintenance,
                    protect_threshold=snapshot.protect_threshold,
                    protected=snapshot.protected,
                )
            )
            if len(self._lists) >= _CACHED_LISTS:
                del self._lists[next(iter(self._lists))]
            cached = self._lists[key] = (generation, response)
        # The service has not changed since the cached list was built, so it is consistent with
        # the view's current revision too; revisions only grow, so the shared message may be
        # updated in place.
        cached[1].revision = self._view.revision
        return cached[1]

    async def ListServices(  # noqa: N802 (gRPC method names are CamelCase)
        self, request: registry_pb2.ListServicesRequest, context: ServicerContext
    ) -> registry_pb2.ListServicesResponse:
        """Summarize every service of a namespace (of every namespace when it is empty)."""
        if request.namespace:
            validate.namespace(request.namespace)
        summaries = []
        for name in self._view.service_names(request.namespace):
            state = self._view.service(name)
            served = self._view.served(name)
            summaries.append(
                registry_pb2.ServiceSummary(
                    namespace=name.namespace,
                    service=name.service,
                    instances=len(state.instances),
                    eligible=len(served.instances),
                    maintenance=state.maintenance,
                    protected=served.protected,
                )
            )
        return registry_pb2.ListServicesResponse(services=summaries, revision=self._view.revision)

    async def Watch(  # type: ignore[override]  # noqa: N802 (CamelCase gRPC name; writes bytes, see below)
        self, request: registry_pb2.WatchRequest, context: ServicerContext
    ) -> None:
        """Stream a snapshot (or the changes since `start_revision`), then every change.

        Writes serialized `WatchResponse` messages, shared by every watcher a change reaches
        (`add_registry_servicer` registers Watch with a serializer that passes them through).
        The messages are written by a task of this call's own, not by the call's coroutine:
        that one runs inside one async generator per server interceptor, and resuming it twice
        per message through all of them cost 10-15 % of a message's server CPU, paid for
        each of the thousand watchers a change may reach.
        """
        name = validate.service_name(request.namespace, request.service)
        selector = Selector.parse(request.selector)
        if request.start_revision < 0:
            raise ValidationError.for_field("start_revision", "must not be negative")
        subscription = self._view.subscribe(name, selector, request.start_revision)
        writer = asyncio.create_task(
            self._write_changes(subscription, context), name="registry-watch-writer"
        )
        try:
            # Ends only when a write fails; cancelling this call cancels the writer with it.
            await writer
        finally:
            writer.cancel()
            self._view.unsubscribe(subscription)

    async def _write_changes(self, subscription: Subscription, context: ServicerContext) -> None:
        outbox = subscription.outbox
        while True:
            for response in await outbox.take():
                if isinstance(response, bytes):
                    await context.write(response)
                else:  # RESET
                    snapshot = self._view.service_response(subscription.name, subscription.selector)
                    await context.write(snapshot.SerializeToString())

    async def Resolve(  # noqa: N802 (gRPC method names are CamelCase)
        self, request: registry_pb2.ResolveRequest, context: ServicerContext
    ) -> registry_pb2.ResolveResponse:
        """Pick one eligible instance with the named balancer."""
        name = validate.service_name(request.namespace, request.service)
        selector = Selector.parse(request.selector)
        balancer_name = request.balancer or DEFAULT_BALANCER
        picker = self._picker(name, request.selector, selector, balancer_name)
        if not picker.endpoints:
            raise UnavailableError(f"service {name} has no eligible instance")
        balancer = picker.balancer
        endpoint = balancer.pick(picker.endpoints, request.hash_key or None)
        if isinstance(balancer, LoadAwareBalancer):
            # The registry never sees the thin client's call end: count it as done at once.
            balancer.complete(endpoint)
        return registry_pb2.ResolveResponse(
            instance=picker.instances[endpoint.id],
            protected=picker.protected,
            revision=self._view.revision,
        )

    def _picker(
        self, name: ServiceName, selector_text: str, selector: Selector, balancer_name: str
    ) -> _Picker:
        key = (name, selector_text, balancer_name)
        generation = self._view.service(name).generation
        picker = self._pickers.get(key)
        if picker is None:
            if balancer_name not in self._balancers.loaded:
                installed = ", ".join(sorted(self._balancers.loaded))
                raise ValidationError.for_field(
                    "balancer", f"unknown balancer {balancer_name!r} (installed: {installed})"
                )
            balancer = self._balancers.get(balancer_name).create()
            picker = _Picker(-1, (), {}, False, balancer)
            self._pickers[key] = picker
        if picker.generation != generation:
            served = self._view.served(name)
            chosen = [i for i in served.instances if selector.matches(labels(i))]
            picker.generation = generation
            picker.endpoints = tuple(to_endpoint(i) for i in chosen)
            picker.instances = {i.id: i for i in chosen}
            picker.protected = served.protected
        return picker
