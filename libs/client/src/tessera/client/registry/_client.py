from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

import grpc

from tessera.client._lifecycle import AsyncClosing
from tessera.client._rpc_errors import translated
from tessera.client.registry._errors import rpc_error
from tessera.core import TesseraError, UnavailableError, ValidationError
from tessera.proto.registry.v1 import registry_pb2, registry_pb2_grpc

T = TypeVar("T")

#: Seconds a unary registry call may take.
CALL_TIMEOUT_S = 5.0

#: Most registrations the registry takes in one RegisterBatch.
MAX_BATCH = 1000


class RegistryClient(AsyncClosing):
    """The registry's API over gRPC, failing over across replicas.

    Each call goes to the current replica; when it fails with UNAVAILABLE the client moves to the
    next target (`fail_over`) and raises, so callers that retry (the keep-alive and discovery
    loops of this package) land on another replica. Errors are the Tessera tree (`rpc_error`).

    Concurrency: any number of tasks of one event loop. Use as an async context manager or call
    `close`.

    Args:
        targets: Registry replicas as `host:port`, tried in order.

    Raises:
        ValidationError: `targets` is empty.

    """

    def __init__(self, targets: Sequence[str]) -> None:
        if not targets:
            raise ValidationError.for_field("targets", "name at least one registry")
        self._targets = tuple(targets)
        self._current = 0
        self._channels: dict[int, grpc.aio.Channel] = {}

    @property
    def target(self) -> str:
        """The replica calls go to now."""
        return self._targets[self._current]

    def stub(self) -> registry_pb2_grpc.RegistryAsyncStub:
        """Return a stub on the current replica's channel."""
        channel = self._channels.get(self._current)
        if channel is None:
            channel = grpc.aio.insecure_channel(self.target)
            self._channels[self._current] = channel
        return registry_pb2_grpc.RegistryStub(channel)

    def fail_over(self) -> None:
        """Move to the next replica."""
        self._current = (self._current + 1) % len(self._targets)

    async def close(self) -> None:
        """Close every channel."""
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()

    async def register(self, instance: registry_pb2.Instance) -> registry_pb2.RegisterResponse:
        """Register one instance (see `Registry.Register`).

        Raises:
            ValidationError: The instance is invalid (the violations name its fields).
            UnavailableError: The replica could not be reached.

        """
        request = registry_pb2.RegisterRequest(instance=instance)
        return await self._call(lambda stub: stub.Register(request, timeout=CALL_TIMEOUT_S))

    async def register_many(
        self, instances: Sequence[registry_pb2.Instance]
    ) -> list[registry_pb2.RegisterResponse]:
        """Register instances with `Registry.RegisterBatch`, up to `MAX_BATCH` per call, in order.

        Returns:
            One response per instance, in the given order (empty for no instance).

        Raises:
            ValidationError: An instance is invalid (violations name
                `registrations[i].instance.<field>`, `i` counted within its call of `MAX_BATCH`);
                that call stored nothing, earlier calls stay stored.
            UnavailableError: The replica could not be reached.

        """
        results: list[registry_pb2.RegisterResponse] = []
        for start in range(0, len(instances), MAX_BATCH):
            request = registry_pb2.RegisterBatchRequest(
                registrations=[
                    registry_pb2.RegisterRequest(instance=instance)
                    for instance in instances[start : start + MAX_BATCH]
                ]
            )
            results.extend((await self._register_batch(request)).results)
        return results

    async def _register_batch(
        self, request: registry_pb2.RegisterBatchRequest
    ) -> registry_pb2.RegisterBatchResponse:
        return await self._call(lambda stub: stub.RegisterBatch(request, timeout=CALL_TIMEOUT_S))

    async def deregister(self, namespace: str, service: str, instance_id: str) -> int:
        """Remove one instance; returns the revision.

        Raises:
            NotFoundError: The instance is not registered.

        """
        ref = registry_pb2.InstanceRef(namespace=namespace, service=service, id=instance_id)
        request = registry_pb2.DeregisterRequest(instance=ref)
        reply = await self._call(lambda stub: stub.Deregister(request, timeout=CALL_TIMEOUT_S))
        return reply.revision

    async def set_status(
        self,
        namespace: str,
        service: str,
        instance_id: str,
        status: registry_pb2.ServingStatus.ValueType,
    ) -> int:
        """Change an instance's serving status (drain with SERVING_STATUS_DRAINING).

        Raises:
            NotFoundError: The instance is not registered.

        """
        ref = registry_pb2.InstanceRef(namespace=namespace, service=service, id=instance_id)
        request = registry_pb2.SetStatusRequest(instance=ref, status=status)
        reply = await self._call(lambda stub: stub.SetStatus(request, timeout=CALL_TIMEOUT_S))
        return reply.revision

    async def configure_service(
        self,
        namespace: str,
        service: str,
        *,
        maintenance: bool = False,
        protect_threshold: float = 0.0,
    ) -> int:
        """Set a service's maintenance switch and protection threshold; returns the revision."""
        request = registry_pb2.ConfigureServiceRequest(
            namespace=namespace,
            service=service,
            maintenance=maintenance,
            protect_threshold=protect_threshold,
        )
        reply = await self._call(
            lambda stub: stub.ConfigureService(request, timeout=CALL_TIMEOUT_S)
        )
        return reply.revision

    async def list(
        self, namespace: str, service: str, selector: str = ""
    ) -> registry_pb2.ListResponse:
        """Return the selected instances of a service and the revision they are current at."""
        request = registry_pb2.ListRequest(namespace=namespace, service=service, selector=selector)
        return await self._call(lambda stub: stub.List(request, timeout=CALL_TIMEOUT_S))

    async def list_services(self, namespace: str = "") -> registry_pb2.ListServicesResponse:
        """Summarize the services of a namespace (of every namespace when empty).

        Raises:
            ValidationError: The namespace is malformed.
            UnavailableError: The replica could not be reached.

        """
        request = registry_pb2.ListServicesRequest(namespace=namespace)
        return await self._call(lambda stub: stub.ListServices(request, timeout=CALL_TIMEOUT_S))

    async def resolve(
        self,
        namespace: str,
        service: str,
        *,
        selector: str = "",
        balancer: str = "",
        hash_key: bytes = b"",
    ) -> registry_pb2.ResolveResponse:
        """Have the registry pick one eligible instance.

        Raises:
            ValidationError: Unknown balancer or malformed selector.
            UnavailableError: No eligible instance.

        """
        request = registry_pb2.ResolveRequest(
            namespace=namespace,
            service=service,
            selector=selector,
            balancer=balancer,
            hash_key=hash_key,
        )
        return await self._call(lambda stub: stub.Resolve(request, timeout=CALL_TIMEOUT_S))

    async def watch(
        self, namespace: str, service: str, selector: str = "", start_revision: int = 0
    ) -> AsyncIterator[registry_pb2.WatchResponse]:
        """Stream one Watch from the current replica (no resume; `ServiceWatch` resumes).

        Raises:
            TesseraError: The stream failed (UNAVAILABLE moves to the next replica first).

        """
        request = registry_pb2.WatchRequest(
            namespace=namespace, service=service, selector=selector, start_revision=start_revision
        )
        call = self.stub().Watch(request)
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as error:
            raise self._translate(error) from error
        finally:
            call.cancel()

    async def _call(self, send: Callable[[registry_pb2_grpc.RegistryAsyncStub], Awaitable[T]]) -> T:
        return await translated(send(self.stub()), self._translate)

    def _translate(self, error: grpc.aio.AioRpcError) -> TesseraError:
        failure = rpc_error(error)
        if isinstance(failure, UnavailableError):
            self.fail_over()
        return failure
