from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog
from aetcd import rpc

from tessera.core import BackendError
from tessera.core.etcd import EtcdClient
from tessera.registry._keys import LEADER
from tessera.registry._lease import ProcessLease


class Leadership:
    """Lease-based leadership among registry replicas: at most one leads at a time.

    The leader is the replica whose owner id is stored at `LEADER`, on that replica's process
    lease: when the leader dies the key expires with its lease (after `lease_ttl_s`), and when
    it stops cleanly it deletes the key (`resign`), so another replica takes over within one
    campaign interval. Campaigning is a single etcd transaction: create the key if absent, else
    read it.

    The leader's `term` is the key's create revision. It only grows, so whoever acts for the
    leader (the Celery tasks it sends) can check that the term it was given is still current
    and do nothing otherwise (fencing): a replica that lost its lease in a partition may still
    believe it leads, but its term is stale.

    Concurrency: one event loop.

    Args:
        etcd: The client to campaign through.
        owner: This replica's identity.
        lease: This replica's process lease, which the leader key is attached to.
        interval_s: How often `run` campaigns.

    """

    def __init__(
        self, etcd: EtcdClient, owner: str, lease: ProcessLease, interval_s: float
    ) -> None:
        self._etcd = etcd
        self._owner = owner.encode()
        self._lease = lease
        self._interval_s = interval_s
        self._term: int | None = None

    @property
    def term(self) -> int | None:
        """The current term while this replica leads, else None."""
        return self._term

    async def campaign(self) -> int | None:
        """Take the leadership if nobody holds it; return this replica's term, or None.

        Raises:
            BackendError: etcd failed, or the process lease is being replaced (leadership is
                then given up until the next campaign).

        """
        self._term = None
        lease_id = self._lease.id
        key = LEADER.encode()
        request = rpc.TxnRequest(
            compare=[
                rpc.Compare(
                    key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0
                )
            ],
            success=[
                rpc.RequestOp(
                    request_put=rpc.PutRequest(key=key, value=self._owner, lease=lease_id)
                )
            ],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key))],
        )
        reply = await self._txn(request)
        if reply.succeeded:
            self._term = int(reply.header.revision)
            structlog.get_logger(__name__).info("registry_leader_elected", term=self._term)
        else:
            kvs = reply.responses[0].response_range.kvs
            # Ours only on the current lease: a key left on a lost lease is about to expire.
            if kvs and kvs[0].value == self._owner and kvs[0].lease == lease_id:
                self._term = int(kvs[0].create_revision)
        return self._term

    async def run(self) -> None:
        """Campaign every interval forever; cancel to stop."""
        while True:
            try:
                await self.campaign()
            except BackendError as error:
                structlog.get_logger(__name__).warning(
                    "registry_campaign_failed", error=error.message
                )
            await asyncio.sleep(self._interval_s)

    async def resign(self) -> None:
        """Give up the leadership now, if this replica holds it (best effort)."""
        if self._term is None:
            return
        self._term = None
        key = LEADER.encode()
        request = rpc.TxnRequest(
            compare=[
                rpc.Compare(
                    key=key, target=rpc.Compare.VALUE, result=rpc.Compare.EQUAL, value=self._owner
                )
            ],
            success=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))],
        )
        with contextlib.suppress(BackendError):
            await self._txn(request)

    async def _txn(self, request: Any) -> Any:
        return await self._etcd.execute(
            lambda client: client.kvstub.Txn(
                request, timeout=client._timeout, metadata=client.metadata
            ),
            idempotent=False,
        )


async def current_term(etcd: EtcdClient) -> int | None:
    """Return the term of the current leader (its key's create revision), or None.

    Raises:
        BackendError: etcd failed.

    """
    leader = await etcd.get(LEADER)
    return None if leader is None else leader.create_revision
