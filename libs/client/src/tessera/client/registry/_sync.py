from __future__ import annotations

from collections.abc import Sequence

from tessera.client._sync_facade import SyncFacade
from tessera.client.registry._client import RegistryClient
from tessera.client.registry._discovery import ServiceWatch
from tessera.client.registry._keepalive import Registration
from tessera.proto.registry.v1 import registry_pb2

#: Seconds a blocking call waits for its result.
SYNC_TIMEOUT_S = 30.0


class SyncRegistry(SyncFacade[RegistryClient]):
    """A blocking facade over the async SDK, for code without an event loop.

    The async client, keep-alive and watches run on a private event loop in a daemon thread;
    each method hands its work to that loop and waits. Picks from a `SyncServiceWatch` run in
    the caller's thread (balancers allow it) and never wait for the loop.

    Concurrency: any number of threads. Use as a context manager or call `close`, which stops
    the watches and the keep-alive (deregistering kept instances), then the loop.

    Args:
        targets: Registry replicas as `host:port`.

    Example::

        with SyncRegistry(["127.0.0.1:50051"]) as registry:
            registry.register(Instance(namespace="prod", service="api", host="10.0.0.5",
                                       port=8080))
            api = registry.watch("prod", "db")
            instance = api.pick()

    """

    def __init__(self, targets: Sequence[str]) -> None:
        super().__init__(
            lambda: RegistryClient(targets),
            thread_name="tessera-registry-sdk",
            timeout_s=SYNC_TIMEOUT_S,
        )
        self._registration = Registration(self._client)
        self._watches: list[ServiceWatch] = []

    def register(self, instance: registry_pb2.Instance, *, keep_alive: bool = True) -> str:
        """Register an instance; ephemeral and kept alive in the background by default.

        Returns:
            Its id.

        Raises:
            ValidationError: The registry refused the instance.
            UnavailableError: The registry could not be reached.

        """
        if keep_alive:
            return self._run(self._registration.add(instance))
        return self._run(self._client.register(instance)).id

    def register_many(self, instances: Sequence[registry_pb2.Instance]) -> list[str]:
        """Register instances as they are (not kept alive), `MAX_BATCH` per call, in order.

        Returns:
            Their ids, in the given order.

        Raises:
            ValidationError: An instance is invalid (see `RegistryClient.register_many`).
            UnavailableError: The registry could not be reached.

        """
        return [reply.id for reply in self._run(self._client.register_many(instances))]

    def deregister(self, namespace: str, service: str, instance_id: str) -> None:
        """Stop keeping an instance alive (if it was) and remove it.

        Raises:
            NotFoundError: A persistent instance that is not registered.

        """
        if (namespace, service, instance_id) in self._registration.ids:
            self._run(self._registration.remove(namespace, service, instance_id))
        else:
            self._run(self._client.deregister(namespace, service, instance_id))

    def set_status(
        self,
        namespace: str,
        service: str,
        instance_id: str,
        status: registry_pb2.ServingStatus.ValueType,
    ) -> int:
        """Change an instance's serving status; returns the revision."""
        return self._run(self._client.set_status(namespace, service, instance_id, status))

    def list(self, namespace: str, service: str, selector: str = "") -> registry_pb2.ListResponse:
        """Return the selected instances of a service."""
        return self._run(self._client.list(namespace, service, selector))

    def resolve(
        self, namespace: str, service: str, *, balancer: str = "", hash_key: bytes = b""
    ) -> registry_pb2.Instance:
        """Have the registry pick one eligible instance."""
        reply = self._run(
            self._client.resolve(namespace, service, balancer=balancer, hash_key=hash_key)
        )
        return reply.instance

    def watch(
        self, namespace: str, service: str, *, selector: str = "", balancer: str = "round_robin"
    ) -> ServiceWatch:
        """Start a discovery cache for a service and wait for its first snapshot.

        Call its `pick` (and `complete`) from any thread; its other methods belong to the
        facade's loop.

        Raises:
            PluginError: The balancer is not installed.
            TimeoutError: No snapshot arrived in time.

        """

        async def start() -> ServiceWatch:
            watch = ServiceWatch(
                self._client, namespace, service, selector=selector, balancer=balancer
            )
            return await watch.start()

        watch = self._run(start())
        self._watches.append(watch)
        return watch

    async def _close_client(self) -> None:
        # `close` stops the watches and the keep-alive (deregistering kept instances) first.
        for watch in self._watches:
            await watch.close()
        await self._registration.close()
        await self._client.close()
