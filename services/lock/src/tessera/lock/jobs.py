"""Background jobs of the lock service (queue `lock`, entry point `tessera.jobs`).

Beat sends both on their intervals (`LockSettings.lock_reap_interval_s`,
`lock_stats_interval_s`, read when beat starts); any worker serving queue `lock` runs them on
the backend `TESSERA_LOCK_BACKEND` names, so they reach the same state as the service.

- `tessera.lock.reap`: `LockBackend.reap` — clears what dead sessions left on locks nobody
  touches (every backend already reaps a lock during each operation on it), and ends the
  lock-delays that are over (etcd: the guards of expired holders).
- `tessera.lock.stats`: counts locks, semaphores, holders and waiters and writes them to Redis
  (`STATS_KEY`, JSON, expiring after `STATS_TTL_S`) for operators and dashboards.

Both are idempotent: runs that overlap, or run again after a worker died, are harmless.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import structlog

from tessera.core.jobs import JobContext
from tessera.core.plugins import LockMode
from tessera.core.redis import connect_redis, redis_errors
from tessera.lock._binding import load_backend
from tessera.lock._settings import LockSettings

#: Redis key of the latest statistics (JSON), written by `tessera.lock.stats`.
STATS_KEY = "tessera:lock:stats"
#: Statistics older than this many seconds are stale (no beat or no worker).
STATS_TTL_S = 600

__all__ = ["STATS_KEY", "STATS_TTL_S", "reap_once", "register", "stats_once"]


async def reap_once(settings: LockSettings) -> dict[str, int]:
    """Run the backend's reaper once.

    Returns:
        `reaped`: the records deleted.

    Raises:
        PluginError: The backend is not installed.
        BackendError: The backend failed (the task fails; beat sends it again).

    """
    backend = load_backend(settings)
    try:
        reaped = await backend.reap()
    finally:
        await backend.close()
    if reaped:
        structlog.get_logger(__name__).info("lock_reaped", records=reaped)
    return {"reaped": reaped}


async def stats_once(settings: LockSettings) -> dict[str, int]:
    """Count the backend's locks and write the counts to Redis at `STATS_KEY`.

    The JSON document: `{"at": unix time, "backend": name, "locks": n, "semaphores": n,
    "holders": n, "shared_holders": n, "waiters": n, "longest_queue": {"name": lock, "waiters":
    n} | null}`
    (elections count as locks: each is one).

    Returns:
        `locks` (semaphores included), `holders` and `waiters`.

    Raises:
        BackendError: The backend or Redis failed.

    """
    backend = load_backend(settings)
    try:
        states = await backend.list_locks("")
    finally:
        await backend.close()
    semaphores = sum(state.permits > 0 for state in states)
    longest = max(states, key=lambda state: len(state.waiters), default=None)
    document: dict[str, Any] = {
        "at": time.time(),
        "backend": settings.lock_backend,
        "locks": len(states) - semaphores,
        "semaphores": semaphores,
        "holders": sum(len(state.holders) for state in states),
        "waiters": sum(len(state.waiters) for state in states),
        "shared_holders": sum(
            entry.mode is LockMode.SHARED for state in states for entry in state.holders
        ),
        "longest_queue": None
        if longest is None or not longest.waiters
        else {"name": longest.name, "waiters": len(longest.waiters)},
    }
    redis = connect_redis(settings)
    try:
        with redis_errors("lock stats"):
            await redis.set(STATS_KEY, json.dumps(document), ex=STATS_TTL_S)
    finally:
        await redis.aclose()
    return {"locks": len(states), "holders": document["holders"], "waiters": document["waiters"]}


def register(context: JobContext) -> None:
    """Define `tessera.lock.reap` and `tessera.lock.stats` and schedule them on beat."""
    intervals = LockSettings.from_env()
    options: dict[str, Any] = {"acks_late": True, "reject_on_worker_lost": True}

    @context.task("reap", **options)
    def reap() -> dict[str, int]:
        # Read when the task runs: the worker's environment names the backend.
        return asyncio.run(reap_once(LockSettings.from_env()))

    @context.task("stats", **options)
    def stats() -> dict[str, int]:
        return asyncio.run(stats_once(LockSettings.from_env()))

    context.schedule("tessera.lock.reap", reap.name, intervals.lock_reap_interval_s)
    context.schedule("tessera.lock.stats", stats.name, intervals.lock_stats_interval_s)
