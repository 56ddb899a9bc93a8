from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aetcd import rpc

from tessera.core import BackendError, TesseraError

#: Most puts in one transaction (etcd's default `--max-txn-ops` is 128).
MAX_BATCH = 128

#: Sends one etcd transaction and returns its reply.
SendTxn = Callable[[Any], Awaitable[Any]]


@dataclass(slots=True)
class _Put:
    key: bytes
    value: bytes
    lease: int
    done: asyncio.Future[int] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class PutBatcher:
    """Coalesces concurrent puts into one etcd transaction each.

    A put waits while the transaction before it is in flight; every put that arrives meanwhile
    goes into the next one (up to `MAX_BATCH`, never two puts of one key, which etcd refuses).
    At low load a put goes out alone at once; under load one round trip and one watch response
    carry many registrations instead of one each. All puts of a transaction share its revision,
    and the watch delivers that revision's events together, so a caller that waits for its
    revision in the view sees every put of the batch applied.

    Concurrency: any number of tasks of one event loop.

    Args:
        send: Sends one transaction.

    """

    def __init__(self, send: SendTxn) -> None:
        self._send = send
        self._pending: list[_Put] = []
        self._flusher: asyncio.Task[None] | None = None

    async def put(self, key: bytes, value: bytes, lease: int) -> int:
        """Write a key as part of the next transaction; return that transaction's revision.

        Raises:
            BackendError: etcd failed (every put of that transaction fails alike).

        """
        return (await self.put_many([(key, value, lease)]))[0]

    async def put_many(self, items: Sequence[tuple[bytes, bytes, int]]) -> list[int]:
        """Write several keys (key, value, lease), in this order; return each one's revision.

        They go out in as few transactions as `MAX_BATCH` and the one-put-per-key rule allow,
        possibly together with other callers' puts; a later put of a key lands in a later
        transaction, so it wins.

        Raises:
            BackendError: etcd failed for one of them (the others may be stored).

        """
        puts = [_Put(key, value, lease) for key, value, lease in items]
        self._pending.extend(puts)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="registry-put-batch")
        # Shielded: a caller that gives up must not cancel the transaction of the others.
        # gather of futures (not coroutines) creates no task per put.
        return list(await asyncio.shield(asyncio.gather(*(put.done for put in puts))))

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch: list[_Put] = []
                rest: list[_Put] = []
                keys: set[bytes] = set()
                for put in self._pending:
                    if len(batch) < MAX_BATCH and put.key not in keys:
                        batch.append(put)
                        keys.add(put.key)
                    else:
                        rest.append(put)
                self._pending = rest
                request = rpc.TxnRequest(
                    success=[
                        rpc.RequestOp(
                            request_put=rpc.PutRequest(key=p.key, value=p.value, lease=p.lease)
                        )
                        for p in batch
                    ]
                )
                try:
                    reply = await self._send(request)
                except TesseraError as error:
                    _fail(batch, error)
                    continue
                except BaseException:
                    # Cancelled (the process is stopping): nobody may wait forever.
                    _fail(
                        batch + self._pending,
                        BackendError("the registry is stopping", backend="etcd"),
                    )
                    self._pending = []
                    raise
                revision = int(reply.header.revision)
                for put in batch:
                    if not put.done.done():
                        put.done.set_result(revision)
        finally:
            self._flusher = None


def _fail(puts: list[_Put], error: TesseraError) -> None:
    for put in puts:
        if not put.done.done():
            put.done.set_exception(error)
