from __future__ import annotations

import asyncio
import itertools
import time
import uuid

from tessera.core import BackendError, TesseraSettings
from tessera.core.embedded import EtcdCluster
from tessera.core.plugins import LockMode, ReleaseOutcome
from tessera.lock_backends import EtcdLockBackend
from tessera.testing import (
    ACQUIRE,
    OK,
    RELEASE,
    History,
    ServerFactory,
    check_exclusive_holds,
    check_fencing_tokens,
)

CLIENTS = 8
ACQUISITIONS = 1000
KILL_AFTER = 300


async def test_etcd_leader_killed_during_acquisitions_leaves_no_overlapping_holds(
    etcd_cluster_factory: ServerFactory[EtcdCluster],
) -> None:
    cluster = etcd_cluster_factory()
    backend = EtcdLockBackend(TesseraSettings(etcd_endpoints=cluster.endpoints))
    name = f"leader-kill/{uuid.uuid4().hex}"
    history = History()
    granted = itertools.count(1)
    done = asyncio.Event()
    killed_at: list[float] = []
    first_grant_after_kill: list[float] = []
    kill_now = asyncio.Event()

    async def client(index: int) -> None:
        # Never renewed: the TTL must outlast the whole run on a loaded machine (the test is
        # about the leader kill, not about expiry).
        session = await backend.open_session(90)
        who = f"client-{index}"
        while not done.is_set():
            request_id = uuid.uuid4().hex
            invocation = history.invoke(who, ACQUIRE, key=name)
            while True:  # the same request id makes retrying an unknown outcome safe
                try:
                    grant = await backend.acquire(
                        name, session.id, LockMode.EXCLUSIVE, wait_s=30, request_id=request_id
                    )
                    break
                except BackendError:
                    await asyncio.sleep(0.1)
            assert grant is not None
            invocation.complete(OK, token=grant.token)
            if killed_at and not first_grant_after_kill:
                first_grant_after_kill.append(time.monotonic())
            count = next(granted)
            if count == KILL_AFTER:
                kill_now.set()
            if count >= ACQUISITIONS:
                done.set()
            release = history.invoke(who, RELEASE, key=name)
            try:
                outcome = await backend.release(name, session.id, grant.token)
            except BackendError:
                release.complete("unknown")  # this hold has no certain end; retried below
                while True:
                    try:
                        await backend.release(name, session.id, grant.token)
                        break
                    except BackendError:
                        await asyncio.sleep(0.1)
            else:
                # The etcd client retries a release whose reply was lost with the leader; when the
                # first attempt had committed, the retry finds the key gone. Either way the hold
                # ended within this call, which is what the history records.
                assert outcome in (ReleaseOutcome.RELEASED, ReleaseOutcome.ALREADY_GONE)
                release.complete(OK)

    async def killer() -> None:
        await kill_now.wait()
        leader = await asyncio.to_thread(cluster.leader)
        assert leader is not None
        killed_at.append(time.monotonic())
        await asyncio.to_thread(leader.kill)

    try:
        async with asyncio.timeout(100):
            await asyncio.gather(killer(), *(client(index) for index in range(CLIENTS)))
    finally:
        await backend.close()

    acquisitions = [op for op in history if op.op == ACQUIRE and op.succeeded]
    assert len(acquisitions) >= ACQUISITIONS
    assert killed_at
    assert first_grant_after_kill
    assert check_exclusive_holds(history) == []
    assert check_fencing_tokens(history) == []
    print(  # the figure the issue asks to report; pytest -s shows it
        f"time to first grant after the leader kill: "
        f"{first_grant_after_kill[0] - killed_at[0]:.3f} s"
    )
