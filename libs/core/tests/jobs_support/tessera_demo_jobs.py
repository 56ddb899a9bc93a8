"""A task module for the jobs tests, registered for the queues `testjobs` and `testkill`."""

import os
import time
from typing import Any

import redis

from tessera.core.jobs import JobContext


def register(context: JobContext) -> None:
    url = context.settings.redis_url

    @context.task("write")
    def write(key: str, value: str) -> str:
        with redis.Redis.from_url(url) as client:
            client.set(key, value, ex=300)
        return value

    @context.task("slow_write", bind=True)
    def slow_write(task: Any, key: str, value: str, first_run_delay_s: float) -> str:
        """Idempotent: however often it runs, the effect is `key = value`.

        Records each run (`<key>:runs`, and `<key>:runners` = "hostname pid") so that tests can
        kill the process running it and count the runs.
        """
        with redis.Redis.from_url(url) as client:
            client.rpush(f"{key}:runners", f"{task.request.hostname} {os.getpid()}")
            if client.incr(f"{key}:runs") == 1:
                time.sleep(first_run_delay_s)
            client.set(key, value, ex=300)
        return value


def register_broken(context: JobContext) -> None:
    raise ValueError("this task module is broken")
