from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from aetcd import rpc

from tessera.core import AbortedError, NotFoundError
from tessera.core.etcd import EtcdClient
from tessera.proto.registry.v1 import registry_pb2
from tessera.registry._batch import PutBatcher
from tessera.registry._keys import ServiceName, instance_key, service_key

#: Mutates an instance in place before it is written back.
Mutation = Callable[[registry_pb2.Instance], None]

_CAS_ATTEMPTS = 8


class InstanceStore:
    """Writes the registry's records to etcd; every other read goes through the view.

    Each instance is one key holding a serialized `tessera.registry.v1.Instance`. Ephemeral
    instances are attached to the lease of the registry process that owns them (`owner`), so
    they vanish with that process unless another replica adopts them first; persistent instances
    have no lease.

    Concurrency: any number of tasks of one event loop. Updates are compare-and-swap on the key's
    `mod_revision`, retried when another writer won.

    Args:
        etcd: The client to write through.
        owner: This process's identity, written into the instances it owns.

    """

    def __init__(self, etcd: EtcdClient, owner: str) -> None:
        self._etcd = etcd
        self.owner = owner
        self._puts = PutBatcher(self._put_txn)

    async def put(self, instance: registry_pb2.Instance, *, lease: int) -> int:
        """Write an instance (created or replaced); returns the revision of the write.

        Concurrent puts share one etcd transaction (`PutBatcher`), so the revision may be that
        of other instances' writes too.

        Raises:
            BackendError: etcd failed.

        """
        return (await self.put_many([(instance, lease)]))[0]

    async def put_many(self, instances: Sequence[tuple[registry_pb2.Instance, int]]) -> list[int]:
        """Write instances (each with its lease, 0 for none) in order; return their revisions.

        Raises:
            BackendError: etcd failed for one of them (the others may be stored).

        """
        return await self._puts.put_many(
            [
                (
                    instance_key(ServiceName(i.namespace, i.service), i.id),
                    i.SerializeToString(),
                    lease,
                )
                for i, lease in instances
            ]
        )

    async def update(
        self, name: ServiceName, instance_id: str, mutate: Mutation, *, lease: int | None = None
    ) -> int:
        """Change an instance with compare-and-swap, keeping its lease unless `lease` is given.

        Returns:
            The revision of the write.

        Raises:
            NotFoundError: The instance does not exist.
            AbortedError: Other writers kept winning (retryable).
            BackendError: etcd failed.

        """
        key = instance_key(name, instance_id)
        for _ in range(_CAS_ATTEMPTS):
            current = await self._etcd.get(key)
            if current is None:
                raise NotFoundError(f"instance {name}/{instance_id} is not registered")
            instance = registry_pb2.Instance.FromString(current.value)
            mutate(instance)
            instance.revision = 0  # derived from the key on every read
            request = rpc.TxnRequest(
                compare=[
                    rpc.Compare(
                        key=key,
                        target=rpc.Compare.MOD,
                        result=rpc.Compare.EQUAL,
                        mod_revision=current.mod_revision,
                    )
                ],
                success=[
                    rpc.RequestOp(
                        request_put=rpc.PutRequest(
                            key=key,
                            value=instance.SerializeToString(),
                            lease=current.lease if lease is None else lease,
                        )
                    )
                ],
            )
            reply = await self._txn(request)
            if reply.succeeded:
                return int(reply.header.revision)
        raise AbortedError(f"instance {name}/{instance_id} kept changing; try again")

    async def delete(self, name: ServiceName, instance_id: str) -> int:
        """Delete an instance; returns the revision of the delete.

        Raises:
            NotFoundError: The instance does not exist.
            BackendError: etcd failed.

        """
        key = instance_key(name, instance_id)
        request = rpc.TxnRequest(
            compare=[
                rpc.Compare(
                    key=key, target=rpc.Compare.VERSION, result=rpc.Compare.GREATER, version=0
                )
            ],
            success=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))],
        )
        reply = await self._txn(request)
        if not reply.succeeded:
            raise NotFoundError(f"instance {name}/{instance_id} is not registered")
        return int(reply.header.revision)

    async def delete_unchanged(self, key: bytes, mod_revision: int) -> bool:
        """Delete a key only if nobody wrote it since `mod_revision`; returns whether it did.

        Raises:
            BackendError: etcd failed.

        """
        request = rpc.TxnRequest(
            compare=[
                rpc.Compare(
                    key=key,
                    target=rpc.Compare.MOD,
                    result=rpc.Compare.EQUAL,
                    mod_revision=mod_revision,
                )
            ],
            success=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))],
        )
        return bool((await self._txn(request)).succeeded)

    async def configure(self, name: ServiceName, *, maintenance: bool, threshold: float) -> int:
        """Write a service's configuration (JSON); returns the revision of the write.

        Raises:
            BackendError: etcd failed.

        """
        value = json.dumps({"maintenance": maintenance, "protect_threshold": threshold})
        return await self._etcd.put(service_key(name), value)

    async def _put_txn(self, request: Any) -> Any:
        # Only puts: sending the same transaction again writes the same values, so a failure
        # whose outcome is unknown may be retried.
        return await self._etcd.execute(
            lambda client: client.kvstub.Txn(
                request, timeout=client._timeout, metadata=client.metadata
            ),
            idempotent=True,
        )

    async def _txn(self, request: Any) -> Any:
        return await self._etcd.execute(
            lambda client: client.kvstub.Txn(
                request, timeout=client._timeout, metadata=client.metadata
            ),
            idempotent=False,
        )
