"""Elections: Campaign until elected, and failover after a resign or a leader's death.

Usage: ``python bench/lock_election.py [--duration S] [--warmup S] [--concurrency N] [--json]
[--target HOST:PORT] [--smoke]``

Latencies are of the part named, not of the whole loop that makes it repeatable (see
`_lock_workers.measure_spans`). Cases, on the lock service's etcd, Redis and ZooKeeper backends
(case suffix ``_redis``, ``_zookeeper``; none for etcd) and on kazoo's ``Election`` recipe on
the ZooKeeper of the run as the peer (prefix ``kazoo_``):

- ``election_campaign``: ``Campaign`` on an election nobody leads, until elected (the
  ``Resign`` after it is not timed); N workers, an election each. kazoo: from ``Election.run``
  until the function it runs is called.
- ``election_failover_resign``: two candidates and a follower per election; the leader
  resigns, and the time until the follower sees the other candidate lead is recorded; then
  the resigned one campaigns again and the roles swap. The follower is an ``Observe`` stream;
  with kazoo, a children watch on the election's path (the node with the lowest sequence
  leads), as kazoo's recipe offers no observation of its own. On stderr: the time until the
  new leader's ``Campaign`` returned (it knows it leads), for the service.
- ``election_failover_kill``: a leader dies (its session, of TTL 1 s, is never renewed after
  it opened it: as if its process died right then) while a candidate waits; the time from the
  kill until the follower sees the candidate lead, the TTL included (etcd grants at least its
  minimum lease TTL: the TTL granted is on stderr). kazoo: the leader is a process of its own
  (kazoo client, session timeout 1 s) killed with SIGKILL.

N (the elections measured at once) is ``--concurrency`` / 4, at least 1. etcd's own election
API (v3election) is no peer: aetcd, the etcd client the project uses, does not implement it.
Without ZooKeeper installed there is no peer and no ZooKeeper case. With ``--target`` the
service cases run against that service.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from _lock_workers import measure_spans
from _lock_zookeeper import KazooCandidate, KazooThreads, LeaderWatch, kazoo_clients
from harness import BenchOptions, CaseResult, Comparison, Endpoint, ServerHandle, run
from lock_uncontended import Backends, backends, lock_service

from tessera.proto.lock.v1 import lock_pb2, lock_pb2_grpc

_SESSION_TTL_S = 30
# The shortest TTL the service grants, and kazoo's shortest session timeout on the run's
# ZooKeeper (two ticks of 500 ms): the leader's death is noticed no sooner.
_DOOMED_TTL_S = 1
_WAIT_S = 30.0


def elections_for(concurrency: int) -> int:
    """How many elections run at once: a quarter of ``--concurrency``, at least one."""
    return max(1, concurrency // 4)


class _Service:
    """The lock service's election calls, as a benchmark makes them (raw stubs, no SDK)."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = lock_pb2_grpc.LockStub(channel)

    async def open_session(self, ttl_s: int = _SESSION_TTL_S) -> str:
        return (await self.open_session_granted(ttl_s))[0]

    async def open_session_granted(self, ttl_s: int) -> tuple[str, float]:
        """Open a session; return its id and the TTL granted (the backend may round it up)."""
        request = lock_pb2.OpenSessionRequest()
        request.ttl.FromSeconds(ttl_s)
        response = await self.stub.OpenSession(request)
        return response.session_id, response.ttl.ToTimedelta().total_seconds()

    async def close_session(self, session_id: str) -> None:
        await self.stub.CloseSession(lock_pb2.CloseSessionRequest(session_id=session_id))

    async def campaign(self, name: str, session_id: str) -> tuple[int, int]:
        """Campaign until elected; return the token and when (perf_counter_ns) it returned."""
        request = lock_pb2.CampaignRequest(name=name, session_id=session_id, value=b"bench")
        request.wait_timeout.FromNanoseconds(int(_WAIT_S * 1e9))
        response = await self.stub.Campaign(request)
        if not response.elected:
            raise RuntimeError(f"not elected within {_WAIT_S} s")
        return response.token, time.perf_counter_ns()

    async def resign(self, name: str, session_id: str, token: int) -> None:
        await self.stub.Resign(
            lock_pb2.ResignRequest(name=name, session_id=session_id, token=token)
        )

    async def until_candidates(self, name: str, waiting: int) -> None:
        """Wait until `waiting` candidates wait (set-up between samples: polling is fine)."""
        async with asyncio.timeout(_WAIT_S):
            request = lock_pb2.DescribeRequest(name=name)
            while len((await self.stub.Describe(request)).lock.waiters) < waiting:  # noqa: ASYNC110
                await asyncio.sleep(0.001)

    @asynccontextmanager
    async def follower(self, name: str) -> AsyncIterator[_Follower]:
        """Observe election `name` for the block."""
        follower = _Follower()
        task = asyncio.create_task(follower.follow(self.stub, name))
        try:
            yield follower
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class _Follower:
    """An ``Observe`` stream: records when each session was first seen leading."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}
        self._changed = asyncio.Condition()

    async def follow(self, stub: Any, name: str) -> None:
        async for response in stub.Observe(lock_pb2.ObserveRequest(name=name)):
            at = time.perf_counter_ns()
            async with self._changed:
                if response.HasField("leader"):
                    self._seen[f"{response.leader.session_id}/{response.leader.token}"] = at
                self._changed.notify_all()

    async def leads(self, session_id: str, token_above: int) -> int:
        """Wait until `session_id` is seen leading with a token above `token_above`; when."""

        def seen() -> int | None:
            for key, at in self._seen.items():
                session, _, token = key.partition("/")
                if session == session_id and int(token) > token_above:
                    return at
            return None

        async with asyncio.timeout(_WAIT_S), self._changed:
            await self._changed.wait_for(lambda: seen() is not None)
            found = seen()
            assert found is not None
            self._seen.clear()
            return found


async def service_campaign(
    service: _Service, case: str, server: ServerHandle | None, options: BenchOptions
) -> CaseResult:
    sessions = [await service.open_session() for _ in range(elections_for(options.concurrency))]

    async def span(session_id: str) -> int:
        name = f"bench/campaign/{uuid.uuid4().hex}"
        began = time.perf_counter_ns()
        token, elected = await service.campaign(name, session_id)
        await service.resign(name, session_id, token)
        return elected - began

    try:
        return await measure_spans(case, span, sessions, options, server)
    finally:
        for session_id in sessions:
            await service.close_session(session_id)


class _ResignFailover:
    """One election with two candidates taking turns to lead, and a follower."""

    def __init__(self, service: _Service, elected_ns: list[int]) -> None:
        self.service = service
        self.name = f"bench/failover/{uuid.uuid4().hex}"
        self.elected_ns = elected_ns
        self.leader = self.follower = ""
        self.token = 0
        self.waiting: asyncio.Task[tuple[int, int]] | None = None

    async def start(self) -> None:
        self.leader = await self.service.open_session()
        self.follower = await self.service.open_session()
        self.token, _ = await self.service.campaign(self.name, self.leader)
        await self._queue_follower()

    async def _queue_follower(self) -> None:
        self.waiting = asyncio.create_task(self.service.campaign(self.name, self.follower))
        await self.service.until_candidates(self.name, 1)

    async def span(self, follower: _Follower) -> int:
        assert self.waiting is not None
        began = time.perf_counter_ns()
        await self.service.resign(self.name, self.leader, self.token)
        seen = await follower.leads(self.follower, self.token)
        token, elected = await self.waiting
        self.elected_ns.append(elected - began)
        self.leader, self.follower, self.token = self.follower, self.leader, token
        await self._queue_follower()
        return seen - began

    async def stop(self) -> None:
        if self.waiting is not None:
            self.waiting.cancel()
            await asyncio.gather(self.waiting, return_exceptions=True)
        for session_id in (self.leader, self.follower):
            await self.service.close_session(session_id)


async def service_failover_resign(
    service: _Service, case: str, server: ServerHandle | None, options: BenchOptions
) -> CaseResult:
    elected_ns: list[int] = []
    failovers = [
        _ResignFailover(service, elected_ns) for _ in range(elections_for(options.concurrency))
    ]
    async with contextlib.AsyncExitStack() as stack:
        followers = {}
        for failover in failovers:
            followers[failover.name] = await stack.enter_async_context(
                service.follower(failover.name)
            )
            await failover.start()
            stack.push_async_callback(failover.stop)

        async def span(failover: _ResignFailover) -> int:
            return await failover.span(followers[failover.name])

        result = await measure_spans(case, span, failovers, options, server)
    print(
        f"{case}: the new leader's Campaign returned {_median_ms(elected_ns):.2f} ms "
        "(median) after the Resign was sent",
        file=sys.stderr,
    )
    return result


async def service_failover_kill(
    service: _Service, case: str, server: ServerHandle | None, options: BenchOptions
) -> CaseResult:
    followers = [await service.open_session() for _ in range(elections_for(options.concurrency))]
    granted: list[float] = []

    async def span(successor: str) -> int:
        name = f"bench/killed/{uuid.uuid4().hex}"
        async with service.follower(name) as follower:
            # The doomed leader's lease runs from its OpenSession: nothing renews it after.
            killed = time.perf_counter_ns()
            doomed, ttl_s = await service.open_session_granted(_DOOMED_TTL_S)
            granted.append(ttl_s)
            await service.campaign(name, doomed)
            waiting = asyncio.create_task(service.campaign(name, successor))
            try:
                await service.until_candidates(name, 1)
                seen = await follower.leads(successor, 0)
                token, _ = await waiting
            finally:
                waiting.cancel()
            await service.resign(name, successor, token)
            return seen - killed

    try:
        result = await measure_spans(case, span, followers, options, server)
    finally:
        for session_id in followers:
            await service.close_session(session_id)
    print(
        f"{case}: asked a TTL of {_DOOMED_TTL_S} s, granted {max(granted):g} s; the follower saw "
        f"the new leader {result.p50_ms - max(granted) * 1000:.0f} ms (p50) after that TTL",
        file=sys.stderr,
    )
    return result


def _median_ms(samples_ns: list[int]) -> float:
    return statistics.median(samples_ns) / 1e6 if samples_ns else float("nan")


async def service_cases(
    endpoint: Endpoint, server: ServerHandle | None, suffix: str, options: BenchOptions
) -> list[CaseResult]:
    async with grpc.aio.insecure_channel(str(endpoint)) as channel:
        service = _Service(channel)
        return [
            await service_campaign(service, f"election_campaign{suffix}", server, options),
            await service_failover_resign(
                service, f"election_failover_resign{suffix}", server, options
            ),
            await service_failover_kill(
                service, f"election_failover_kill{suffix}", server, options
            ),
        ]


async def kazoo_campaign(hosts: str, options: BenchOptions) -> CaseResult:
    workers = elections_for(options.concurrency)
    threads = KazooThreads(workers)
    try:
        async with kazoo_clients(hosts, 1) as (client,):

            def elect(path: str) -> int:
                elected: list[int] = []
                began = time.perf_counter_ns()
                client.Election(path, "bench").run(lambda: elected.append(time.perf_counter_ns()))
                return elected[0] - began

            async def span(_: int) -> int:
                path = f"/bench/kazoo-campaign/{uuid.uuid4().hex}"
                return await threads.run(lambda: elect(path))

            return await measure_spans(
                "kazoo_election_campaign", span, list(range(workers)), options
            )
    finally:
        threads.close()


class _KazooResignFailover:
    """kazoo's counterpart of `_ResignFailover`: two `KazooCandidate`s and a `LeaderWatch`."""

    def __init__(self, clients: list[Any]) -> None:
        path = f"/bench/kazoo-failover/{uuid.uuid4().hex}"
        self.watch = LeaderWatch(clients[2], path)
        self.leader, self.follower = (
            KazooCandidate(client, path, f"candidate-{index}")
            for index, client in enumerate(clients[:2])
        )

    def start(self) -> None:
        self.leader.start()
        self.watch.wait_for(self.leader.prefix, _WAIT_S)
        self.follower.start()
        self.watch.wait_contenders(2, _WAIT_S)

    def span(self) -> int:
        began = self.leader.resign()
        seen = self.watch.wait_for(self.follower.prefix, _WAIT_S)
        # The resigned candidate campaigns again: wait until it queued before the next sample.
        self.watch.wait_contenders(2, _WAIT_S)
        self.leader, self.follower = self.follower, self.leader
        return seen - began

    def stop(self) -> None:
        self.follower.stop()
        self.leader.stop()


async def kazoo_failover_resign(hosts: str, options: BenchOptions) -> CaseResult:
    count = elections_for(options.concurrency)
    threads = KazooThreads(count)
    async with kazoo_clients(hosts, 3 * count) as clients:
        failovers = [_KazooResignFailover(clients[3 * i : 3 * i + 3]) for i in range(count)]
        try:
            for failover in failovers:
                await asyncio.to_thread(failover.start)

            async def span(failover: _KazooResignFailover) -> int:
                return await threads.run(failover.span)

            return await measure_spans("kazoo_election_failover_resign", span, failovers, options)
        finally:
            for failover in failovers:
                failover.stop()
            threads.close()


# The doomed leader of `kazoo_failover_kill`: a process of its own, so that it can be killed.
_DOOMED_KAZOO_LEADER = """
import sys, threading
from kazoo.client import KazooClient
hosts, path, timeout_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
client = KazooClient(hosts=hosts, timeout=timeout_s)
client.start(15)
def lead():
    print("elected", flush=True)
    threading.Event().wait()
client.Election(path, "doomed").run(lead)
"""


async def kazoo_failover_kill(hosts: str, options: BenchOptions) -> CaseResult:
    count = elections_for(options.concurrency)
    async with kazoo_clients(hosts, count) as clients:

        async def span(client: Any) -> int:
            path = f"/bench/kazoo-killed/{uuid.uuid4().hex}"
            watch = await asyncio.to_thread(LeaderWatch, client, path)
            doomed = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _DOOMED_KAZOO_LEADER,
                hosts,
                path,
                str(_DOOMED_TTL_S),
                stdout=asyncio.subprocess.PIPE,
            )
            successor = KazooCandidate(client, path, "successor")
            try:
                assert doomed.stdout is not None
                async with asyncio.timeout(_WAIT_S):
                    if await doomed.stdout.readline() != b"elected\n":
                        raise RuntimeError("the doomed kazoo leader was not elected")
                successor.start()
                await asyncio.to_thread(watch.wait_contenders, 2, _WAIT_S)
                killed = time.perf_counter_ns()
                doomed.kill()
                seen = await asyncio.to_thread(watch.wait_for, successor.prefix, _WAIT_S)
            finally:
                successor.stop()
                if doomed.returncode is None:
                    doomed.kill()
                await doomed.wait()
            return seen - killed

        return await measure_spans("kazoo_election_failover_kill", span, clients, options)


async def bench(options: BenchOptions) -> list[Comparison]:
    if options.target is not None:
        return [
            Comparison(result) for result in await service_cases(options.target, None, "", options)
        ]
    async with backends() as servers:
        peers = await kazoo_cases(servers, options)
        comparisons = [Comparison(peer) for peer in peers]
        suffixes = {"etcd": "", "redis": "_redis"}
        if servers.zookeeper_hosts is not None:
            suffixes["zookeeper"] = "_zookeeper"
        for backend, suffix in suffixes.items():
            async with lock_service(backend, servers) as (endpoint, server):
                ours = await service_cases(endpoint, server, suffix, options)
            # Without ZooKeeper there are no peers: the service's cases stand alone.
            baselines: list[CaseResult | None] = list(peers) or [None] * len(ours)
            comparisons += [
                Comparison(result, peer) for result, peer in zip(ours, baselines, strict=True)
            ]
        return comparisons


async def kazoo_cases(servers: Backends, options: BenchOptions) -> list[CaseResult]:
    """Return kazoo's election cases in the order of `service_cases`; none without ZooKeeper."""
    hosts = servers.zookeeper_hosts
    if hosts is None:
        return []
    return [
        await kazoo_campaign(hosts, options),
        await kazoo_failover_resign(hosts, options),
        await kazoo_failover_kill(hosts, options),
    ]


if __name__ == "__main__":
    sys.exit(run(__doc__ or "", bench))
