from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

import redis
from celery import Task
from redis.asyncio import Redis

from tessera.core.jobs._app import JobContext

#: Redis key the heartbeat task writes.
HEARTBEAT_KEY = "tessera:heartbeat"
#: Name of the heartbeat task, on queue `core`.
HEARTBEAT_TASK = "tessera.core.heartbeat"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The last heartbeat a worker wrote.

    Its presence shows that beat sent the task and a worker of queue `core` ran it within the
    key's lifetime (three heartbeat intervals).

    Attributes:
        worker: Celery hostname of the worker that ran it (`celery@host`).
        at: When it ran, in Unix seconds.

    """

    worker: str
    at: float

    def age_s(self, now: float | None = None) -> float:
        """Seconds since the heartbeat, as of `now` (Unix seconds, default the current time)."""
        return (time.time() if now is None else now) - self.at


def register(context: JobContext) -> None:
    """Define `tessera.core.heartbeat` and schedule it every `heartbeat_interval_s`.

    Registered as the task module of queue `core`, which gives the task its name.
    """
    settings = context.settings
    interval_s = settings.heartbeat_interval_s
    ttl_s = max(1, math.ceil(3 * interval_s))

    @context.task("heartbeat", bind=True, ignore_result=True)
    def heartbeat(task: Task[Any, Any]) -> None:
        payload = json.dumps({"worker": task.request.hostname, "at": time.time()})
        # A connection per beat (every few seconds) is cheap and needs no care across the pool's
        # forks.
        with redis.Redis.from_url(settings.redis_url, socket_timeout=5) as client:
            client.set(HEARTBEAT_KEY, payload, ex=ttl_s)

    context.schedule(heartbeat.name, heartbeat.name, every_s=interval_s)


async def read_heartbeat(client: Redis) -> Heartbeat | None:
    """Read the last heartbeat.

    Args:
        client: A client of the broker Redis (`connect_redis(settings)`).

    Returns:
        The heartbeat, or None when there is none (no beat, no worker of queue `core`, or both
        stopped for longer than three intervals) or it is not a heartbeat Tessera wrote.

    Raises:
        redis.exceptions.RedisError: Redis failed; wrap the call in `redis_errors` to get a
            `BackendError`.

    """
    raw = await client.get(HEARTBEAT_KEY)
    if raw is None:
        return None
    try:
        fields = json.loads(raw)
        return Heartbeat(worker=str(fields["worker"]), at=float(fields["at"]))
    except (ValueError, TypeError, KeyError):
        return None
