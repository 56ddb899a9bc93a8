"""Contended semaphore: M clients take turns on N permits, each holding a permit 10 ms.

Usage: ``python bench/lock_semaphore.py [--duration S] [--warmup S] [--concurrency M] [--json]
[--target HOST:PORT] [--smoke]``

``--concurrency`` is M, the number of clients (default 16); the semaphore has N = M / 4 permits
(at least 1), so M > N whenever M >= 2. Each client has its own session and loops: ``Acquire``
in mode ``PERMIT`` (waiting, FIFO), hold 10 ms, ``Release``. One operation is one such cycle, so
``ops_per_s`` is grants per second and can at most reach N x 100; latency is the whole cycle,
waiting included. Cases:

- ``kazoo_semaphore_contended`` (peer): the same loop with kazoo's ``Semaphore`` recipe, one
  kazoo client (ZooKeeper connection) and thread per client, on the ZooKeeper of the run.
- ``semaphore_contended``, ``semaphore_contended_redis``, ``semaphore_contended_zookeeper``:
  the loop through the lock service on the etcd, Redis and ZooKeeper backends, each compared
  with kazoo's semaphore (the only semaphore recipe among the peers: aetcd and
  python-redis-lock have none). Without ZooKeeper installed there is no peer and no ZooKeeper
  case.

After each case a line on stderr gives what the records cannot: the share of permit-time held
(busy; N permits over the wall time), the mean hand-off (idle permit-time per grant), max/min
grants per client (fairness) and the most permits seen held at once (must not exceed N). With
``--target`` only ``semaphore_contended`` runs, against that service.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import uuid
from typing import Any

import grpc
from _lock_zookeeper import KazooThreads, kazoo_clients
from harness import BenchOptions, CaseResult, Comparison, Endpoint, ServerHandle, run
from lock_contended import HOLD_S, Occupancy, measured
from lock_uncontended import backends, lock_service

from tessera.proto.lock.v1 import lock_pb2, lock_pb2_grpc

_SESSION_TTL_S = 30
_WAIT_S = 30


def permits_for(clients: int) -> int:
    """Return the semaphore's size for `clients` clients: a quarter of them, at least one."""
    return max(1, clients // 4)


class PermitOccupancy(Occupancy):
    """`Occupancy` for N permits: holders overlap, so counts are guarded and peaks recorded."""

    def __init__(self, permits: int) -> None:
        super().__init__()
        self.permits = permits
        self.holding = 0
        self.most_held = 0
        self._guard = threading.Lock()

    def reset(self) -> None:
        with self._guard:
            super().reset()
            self.most_held = self.holding

    async def hold(self, client: int) -> None:
        began = self._enter()
        await asyncio.sleep(HOLD_S)
        self._leave(client, began)

    def hold_blocking(self, client: int) -> None:
        began = self._enter()
        time.sleep(HOLD_S)
        self._leave(client, began)

    def _enter(self) -> float:
        with self._guard:
            self.holding += 1
            self.most_held = max(self.most_held, self.holding)
        return time.perf_counter()

    def _leave(self, client: int, began: float) -> None:
        held = time.perf_counter() - began
        with self._guard:
            self.holding -= 1
            self.held_s += held
            self.grants[client] += 1

    def report(self, case: str, clients: int) -> None:
        print(
            f"{case}: {clients} clients on {self.permits} permits: {self.figures(clients)}, "
            f"at most {self.most_held} permits held at once",
            file=sys.stderr,
        )


async def service_semaphore(
    case: str, endpoint: Endpoint, server: ServerHandle | None, options: BenchOptions
) -> CaseResult:
    name = f"bench/semaphore/{uuid.uuid4().hex}"
    permits = permits_for(options.concurrency)
    occupancy = PermitOccupancy(permits)
    async with grpc.aio.insecure_channel(str(endpoint)) as channel:
        stub = lock_pb2_grpc.LockStub(channel)
        open_request = lock_pb2.OpenSessionRequest()
        open_request.ttl.FromSeconds(_SESSION_TTL_S)
        sessions = [
            (index, (await stub.OpenSession(open_request)).session_id)
            for index in range(options.concurrency)
        ]

        async def cycle(item: tuple[int, str]) -> None:
            index, session_id = item
            request = lock_pb2.AcquireRequest(
                name=name, session_id=session_id, mode=lock_pb2.LOCK_MODE_PERMIT, permits=permits
            )
            request.wait_timeout.FromSeconds(_WAIT_S)
            granted = await stub.Acquire(request)
            if not granted.acquired:
                raise RuntimeError(f"no permit was granted within {_WAIT_S} s")
            await occupancy.hold(index)
            await stub.Release(
                lock_pb2.ReleaseRequest(name=name, session_id=session_id, token=granted.token)
            )

        try:
            return await measured(case, occupancy, cycle, sessions, options, server)
        finally:
            for _, session_id in sessions:
                await stub.CloseSession(lock_pb2.CloseSessionRequest(session_id=session_id))


async def kazoo_semaphore_peer(hosts: str, options: BenchOptions) -> CaseResult:
    path = f"/bench/semaphore/{uuid.uuid4().hex}"
    permits = permits_for(options.concurrency)
    occupancy = PermitOccupancy(permits)
    threads = KazooThreads(options.concurrency)
    async with kazoo_clients(hosts, options.concurrency) as clients:
        semaphores: list[Any] = [
            client.Semaphore(path, identifier=str(index), max_leases=permits)
            for index, client in enumerate(clients)
        ]

        cycle = threads.cycles(semaphores, occupancy.hold_blocking, "kazoo's semaphore", _WAIT_S)

        try:
            return await measured(
                "kazoo_semaphore_contended",
                occupancy,
                cycle,
                list(range(len(semaphores))),
                options,
            )
        finally:
            threads.close()


async def bench(options: BenchOptions) -> list[Comparison]:
    if options.target is not None:
        ours = await service_semaphore("semaphore_contended", options.target, None, options)
        return [Comparison(ours)]
    async with backends() as servers:
        peer = None
        if servers.zookeeper_hosts is not None:
            peer = await kazoo_semaphore_peer(servers.zookeeper_hosts, options)
        comparisons = [] if peer is None else [Comparison(peer)]
        cases = [("etcd", "semaphore_contended"), ("redis", "semaphore_contended_redis")]
        if servers.zookeeper_hosts is not None:
            cases.append(("zookeeper", "semaphore_contended_zookeeper"))
        for backend, case in cases:
            async with lock_service(backend, servers) as (endpoint, server):
                ours = await service_semaphore(case, endpoint, server, options)
            comparisons.append(Comparison(ours, peer))
        return comparisons


if __name__ == "__main__":
    sys.exit(run(__doc__ or "", bench))
