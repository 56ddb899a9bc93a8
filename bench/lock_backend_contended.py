"""Contended lock straight on the backends, without the service: where a hand-off's time goes.

Usage: ``python bench/lock_backend_contended.py [--duration S] [--warmup S] [--concurrency N]
[--json] [--smoke]``  (the figures in docs/benchmarks.md: ``--concurrency 8``)

The loop of ``lock_contended.py`` (``acquire`` waiting in FIFO order, hold 10 ms, ``release``),
run by ``--concurrency`` tasks of this process on one `LockBackend` each with its own session:
no gRPC, so the hand-off is the backend's alone (the release's write, the wake-up of the next
waiter, whatever it reads before it knows it holds). Cases, each compared with the same loop
through the backend's peer library in the same run:

- ``etcd_backend_contended``: `EtcdLockBackend`, compared with ``aetcd_lock_contended``.
- ``zookeeper_backend_contended``: `ZooKeeperLockBackend` (left out where ZooKeeper is not
  installed), compared with ``kazoo_lock_contended``.

The stderr lines give the busy share, the mean hand-off and max/min grants per client.
"""

from __future__ import annotations

import sys
import uuid

from harness import BenchOptions, CaseResult, Comparison, run
from lock_contended import Occupancy, aetcd_peer, kazoo_lock_peer, measured
from lock_uncontended import backends

from tessera.core import TesseraSettings
from tessera.core.plugins import LockBackend, LockMode
from tessera.lock_backends import EtcdLockBackend, ZooKeeperLockBackend

_SESSION_TTL_S = 30


async def backend_contended(case: str, backend: LockBackend, options: BenchOptions) -> CaseResult:
    name = f"bench/backend-contended/{uuid.uuid4().hex}"
    occupancy = Occupancy()
    sessions = [
        (index, (await backend.open_session(_SESSION_TTL_S)).id)
        for index in range(options.concurrency)
    ]

    async def cycle(item: tuple[int, str]) -> None:
        index, session_id = item
        grant = await backend.acquire(name, session_id, LockMode.EXCLUSIVE, wait_s=30)
        if grant is None:
            raise RuntimeError("the lock was not granted within 30 s")
        await occupancy.hold(index)
        await backend.release(name, session_id, grant.token)

    try:
        return await measured(case, occupancy, cycle, sessions, options)
    finally:
        for _, session_id in sessions:
            await backend.close_session(session_id)


async def bench(options: BenchOptions) -> list[Comparison]:
    async with backends() as servers:
        peer = await aetcd_peer(servers.etcd_endpoint, options)
        etcd = EtcdLockBackend(TesseraSettings(etcd_endpoints=[servers.etcd_endpoint]))
        try:
            ours = await backend_contended("etcd_backend_contended", etcd, options)
        finally:
            await etcd.close()
        comparisons = [Comparison(ours, peer)]
        if servers.zookeeper_hosts is not None:
            hosts = servers.zookeeper_hosts
            zookeeper_peer = await kazoo_lock_peer(hosts, options)
            zookeeper = ZooKeeperLockBackend(TesseraSettings(), hosts=hosts)
            try:
                on_zookeeper = await backend_contended(
                    "zookeeper_backend_contended", zookeeper, options
                )
            finally:
                await zookeeper.close()
            comparisons.append(Comparison(on_zookeeper, zookeeper_peer))
        return comparisons


if __name__ == "__main__":
    sys.exit(run(__doc__ or "", bench))
