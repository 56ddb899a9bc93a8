import asyncio
import sys
from pathlib import Path

import redis.exceptions

from tessera.client.devstack._probes import HEALTHY, ProbeResult, first_line
from tessera.core.jobs import read_heartbeat
from tessera.core.redis import connect_redis

_JOBS_MODULE = "tessera.core.jobs"


def worker_command() -> list[str]:
    """Return the command line of a Celery worker for every installed queue (core + services)."""
    return [sys.executable, "-m", _JOBS_MODULE, "worker"]


def beat_command(data_dir: Path) -> list[str]:
    """Return the command line of Celery beat, keeping its schedule state in ``data_dir``."""
    return [sys.executable, "-m", _JOBS_MODULE, "beat", "--data-dir", str(data_dir)]


async def probe_heartbeat(redis_url: str, timeout_s: float) -> ProbeResult:
    """Tell whether beat and a worker are alive from the job heartbeat in Redis.

    Beat sends ``tessera.core.heartbeat`` every interval and a worker of queue ``core`` writes a
    key that expires after three intervals, so a present key means both ran recently. It cannot
    tell which of the two is down; process state (pids) complements it.

    Args:
        redis_url: The broker, where the heartbeat key lives.
        timeout_s: Seconds allowed for the read.

    Returns:
        Healthy when a heartbeat is present.

    """
    client = connect_redis(redis_url, timeout_s=timeout_s, retries=0)
    try:
        async with asyncio.timeout(timeout_s):
            heartbeat = await read_heartbeat(client)
    except TimeoutError:
        return ProbeResult(False, f"redis gave no answer within {timeout_s:g} s")
    except redis.exceptions.RedisError as error:
        return ProbeResult(False, f"redis: {first_line(str(error))}")
    finally:
        await client.aclose()
    if heartbeat is None:
        return ProbeResult(False, "no recent heartbeat (beat or worker not running)")
    return HEALTHY
