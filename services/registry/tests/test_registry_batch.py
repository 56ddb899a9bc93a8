"""Concurrent puts share etcd transactions; duplicates and failures are handled per put."""

import asyncio

import pytest

from tessera.core import BackendError
from tessera.core.embedded import EtcdServer
from tessera.core.etcd import EtcdClient
from tessera.registry._batch import MAX_BATCH, PutBatcher


def _send(etcd: EtcdClient, sent: list[int]):  # type: ignore[no-untyped-def]
    async def send(request: object) -> object:
        sent.append(len(request.success))  # type: ignore[attr-defined]
        return await etcd.execute(
            lambda client: client.kvstub.Txn(request, metadata=client.metadata), idempotent=True
        )

    return send


async def test_registry_batch_coalesces_concurrent_puts_into_few_transactions(
    etcd_server: EtcdServer,
) -> None:
    sent: list[int] = []
    async with EtcdClient([etcd_server.endpoint]) as etcd:
        batcher = PutBatcher(_send(etcd, sent))
        count = MAX_BATCH + 72
        keys = [f"/test/batch/{n}".encode() for n in range(count)]
        revisions = await asyncio.gather(*(batcher.put(k, b"v", 0) for k in keys))
        # All arrive before the first transaction leaves: two transactions, the first full.
        assert sent == [MAX_BATCH, count - MAX_BATCH]
        assert len(set(revisions)) == 2
        for key, revision in zip(keys, revisions, strict=True):
            stored = await etcd.get(key)
            assert stored is not None
            assert stored.mod_revision == revision

        # Two puts of one key never share a transaction (etcd refuses that): the later wins.
        sent.clear()
        first, second = await asyncio.gather(
            batcher.put(b"/test/batch/same", b"1", 0), batcher.put(b"/test/batch/same", b"2", 0)
        )
        assert sent == [1, 1]
        assert second > first
        stored = await etcd.get(b"/test/batch/same")
        assert stored is not None
        assert stored.value == b"2"


async def test_registry_batch_fails_every_put_of_a_failed_transaction() -> None:
    async def broken(request: object) -> object:
        raise BackendError("etcd is down", backend="etcd")

    batcher = PutBatcher(broken)
    results = await asyncio.gather(
        *(batcher.put(f"/k{n}".encode(), b"v", 0) for n in range(3)), return_exceptions=True
    )
    assert all(isinstance(result, BackendError) for result in results)
    with pytest.raises(BackendError):
        await batcher.put(b"/k", b"v", 0)
