"""A real Redis, real `python -m tessera.core.jobs worker|beat` processes, real tasks."""

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from tessera.core.embedded import RedisServer
from tessera.core.jobs import WorkerSettings, create_celery_app, read_heartbeat
from tessera.core.redis import connect_redis
from tessera.testing import JobsProcess

SUPPORT = Path(__file__).parent / "jobs_support"
HEARTBEAT_INTERVAL_S = 1.0
VISIBILITY_TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def jobs_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("jobs-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def jobs_env(jobs_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of the job processes: demo task modules installed, short intervals."""
    site = tmp_path_factory.mktemp("jobs-site")
    dist_info = site / "tessera_demo_jobs-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tessera_demo_jobs\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[tessera.jobs]\n"
        "testjobs = tessera_demo_jobs:register\n"
        "testkill = tessera_demo_jobs:register\n"
    )
    path = os.pathsep.join([str(site), str(SUPPORT), os.environ.get("PYTHONPATH", "")])
    return {
        **os.environ,
        "PYTHONPATH": path,
        "TESSERA_REDIS_URL": jobs_redis.url,
        "TESSERA_HEARTBEAT_INTERVAL_S": str(HEARTBEAT_INTERVAL_S),
        "TESSERA_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
        "TESSERA_LOG_FORMAT": "console",
        # Spans go to the process's output, which the log file keeps, within 0.1 s.
        "TESSERA_TRACE_EXPORTER": "console",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


@pytest.fixture(scope="module")
def start_jobs_process(
    jobs_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., JobsProcess]]:
    logs = tmp_path_factory.mktemp("jobs-logs")
    started: list[JobsProcess] = []

    def start(*arguments: str) -> JobsProcess:
        name = f"{len(started)}-{arguments[0]}.log"
        process = JobsProcess(arguments, jobs_env, logs / name)
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        process.stop()


@pytest.fixture(scope="module")
def worker(start_jobs_process: Callable[..., JobsProcess]) -> JobsProcess:
    """One worker for the queues core and testjobs, shared by the tests of this module."""
    return start_jobs_process("worker", "-Q", "core,testjobs", "-c", "1", "-n", "main@%h")


@pytest.fixture(scope="module")
def producer(jobs_redis: RedisServer) -> Iterator[Celery]:
    """An app that only sends tasks, as a service would."""
    app = create_celery_app(WorkerSettings(redis_url=jobs_redis.url), queues=())
    yield app
    app.close()


@pytest.fixture
def store(jobs_redis: RedisServer) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(jobs_redis.url) as client:
        yield client


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str, log: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout_s} s\n{log}")
        time.sleep(0.1)


def test_jobs_worker_executes_a_sent_task(
    worker: JobsProcess, producer: Celery, store: redis.Redis
) -> None:
    key = f"jobs:{uuid.uuid4().hex}"
    result = producer.send_task("tessera.testjobs.write", args=[key, "written"])
    assert result.get(timeout=30) == "written", worker.log()
    assert store.get(key) == b"written"
    assert result.state == "SUCCESS"
    # Tracing was set up in the pool process: the task ran inside a span.
    _wait_for(
        lambda: f'"messaging.message.id": "{result.id}"' in worker.log_path.read_text(),
        10,
        "no span of the task in the worker's output",
        worker.log(),
    )


async def test_jobs_beat_and_worker_keep_the_heartbeat_fresh(
    worker: JobsProcess,
    start_jobs_process: Callable[..., JobsProcess],
    jobs_redis: RedisServer,
    tmp_path: Path,
) -> None:
    client = connect_redis(jobs_redis.url)
    try:
        await client.delete("tessera:heartbeat")
        beat = start_jobs_process("beat", "--data-dir", str(tmp_path / "beat"))
        heartbeats = []
        deadline = time.monotonic() + 30
        while len(heartbeats) < 2 and time.monotonic() < deadline:
            heartbeat = await read_heartbeat(client)
            if heartbeat is not None and heartbeat not in heartbeats:
                heartbeats.append(heartbeat)
            await asyncio.sleep(0.2)
        beat.stop()
        assert len(heartbeats) == 2, f"{beat.log()}\n{worker.log()}"
        assert heartbeats[0].worker.startswith("main@")
        assert heartbeats[1].at > heartbeats[0].at
        assert heartbeats[1].age_s() < 5
        ttl = await client.ttl("tessera:heartbeat")
        assert 0 < ttl <= 3 * HEARTBEAT_INTERVAL_S
        assert list((tmp_path / "beat").glob("celerybeat-schedule*"))
    finally:
        await client.aclose()


def test_jobs_task_of_a_killed_pool_process_runs_again(
    worker: JobsProcess, producer: Celery, store: redis.Redis
) -> None:
    key = f"jobs:{uuid.uuid4().hex}"
    result = producer.send_task("tessera.testjobs.slow_write", args=[key, "done", 60])
    _wait_for(lambda: store.get(f"{key}:runs") == b"1", 30, "the task did not start", worker.log())
    runner = store.lindex(f"{key}:runners", 0)
    assert runner is not None
    os.kill(int(runner.split()[1]), signal.SIGKILL)

    assert result.get(timeout=30) == "done", worker.log()
    assert store.get(key) == b"done"
    assert store.get(f"{key}:runs") == b"2"


def test_jobs_task_of_a_killed_worker_is_redelivered_to_another_worker(
    start_jobs_process: Callable[..., JobsProcess], producer: Celery, store: redis.Redis
) -> None:
    key = f"jobs:{uuid.uuid4().hex}"
    lost = start_jobs_process("worker", "-Q", "testkill", "-c", "1", "-n", "lost@%h")
    result = producer.send_task("tessera.testkill.slow_write", args=[key, "done", 60])
    _wait_for(lambda: store.get(f"{key}:runs") == b"1", 30, "the task did not start", lost.log())
    lost.kill()

    rescuer = start_jobs_process("worker", "-Q", "testkill", "-c", "1", "-n", "rescuer@%h")
    assert result.get(timeout=40) == "done", rescuer.log()
    time.sleep(VISIBILITY_TIMEOUT_S)  # had it been delivered twice, a third run would show now
    runners = [entry.decode().split()[0] for entry in store.lrange(f"{key}:runners", 0, -1)]
    assert [runner.split("@")[0] for runner in runners] == ["lost", "rescuer"]
    assert store.get(f"{key}:runs") == b"2"
    assert store.get(key) == b"done"
