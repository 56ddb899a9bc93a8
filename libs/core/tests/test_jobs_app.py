import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tessera.core import ConfigError
from tessera.core.jobs import (
    CORE_QUEUE,
    HEARTBEAT_TASK,
    WorkerSettings,
    create_celery_app,
    installed_queues,
    route_task,
)

SUPPORT = Path(__file__).parent / "jobs_support"


@pytest.fixture
def demo_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Install task modules for the queues testjobs, testkill, testbroken and testmissing."""
    dist_info = tmp_path / "tessera_demo_jobs-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tessera_demo_jobs\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[tessera.jobs]\n"
        "testjobs = tessera_demo_jobs:register\n"
        "testkill = tessera_demo_jobs:register\n"
        "testbroken = tessera_demo_jobs:register_broken\n"
        "testmissing = tessera_demo_jobs_not_installed:register\n"
    )
    monkeypatch.syspath_prepend(str(SUPPORT))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("tessera_demo_jobs", None)
    importlib.invalidate_caches()


def _settings(**overrides: object) -> WorkerSettings:
    return WorkerSettings(redis_url="redis://127.0.0.1:1/3", **overrides)  # type: ignore[arg-type]


@pytest.mark.usefixtures("demo_jobs")
def test_jobs_app_registers_the_tasks_and_beat_entries_of_the_chosen_queues() -> None:
    app = create_celery_app(_settings(heartbeat_interval_s=2.5), queues=["core", "testjobs"])

    assert {HEARTBEAT_TASK, "tessera.testjobs.write", "tessera.testjobs.slow_write"} <= set(
        app.tasks
    )
    assert "tessera.testkill.write" not in app.tasks
    assert app.conf.beat_schedule == {
        HEARTBEAT_TASK: {
            "task": HEARTBEAT_TASK,
            "schedule": 2.5,
            "args": (),
            "options": {"expires": 2.5},
        }
    }
    assert app.amqp.router.route({}, "tessera.testjobs.write")["queue"].name == "testjobs"
    assert app.amqp.router.route({}, HEARTBEAT_TASK)["queue"].name == CORE_QUEUE
    assert app.amqp.router.route({}, "not.a.tessera.task")["queue"].name == CORE_QUEUE


def test_jobs_app_is_configured_for_safe_redelivery() -> None:
    conf = create_celery_app(_settings(visibility_timeout_s=30), queues=()).conf

    assert conf.broker_url == conf.result_backend == "redis://127.0.0.1:1/3"
    assert (conf.task_serializer, conf.result_serializer) == ("json", "json")
    assert list(conf.accept_content) == ["json"]
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.task_track_started is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == 30
    assert conf.broker_transport_options["unacked_restore_interval"] == 3
    assert conf.beat_schedule == {}


def test_jobs_route_task_maps_the_service_segment_to_its_queue() -> None:
    assert route_task("tessera.registry.expire_instances") == {"queue": "registry"}
    assert route_task("tessera.core.heartbeat", (), {}, {}) == {"queue": "core"}
    assert route_task("tessera.registry") is None
    assert route_task("celery.backend_cleanup") is None


@pytest.mark.usefixtures("demo_jobs")
def test_jobs_default_queues_are_every_installed_task_module() -> None:
    assert {"core", "testjobs", "testkill"} <= set(installed_queues())
    app = create_celery_app(_settings(worker_queues="testjobs, testkill"))
    assert {"tessera.testjobs.write", "tessera.testkill.write"} <= set(app.tasks)
    assert HEARTBEAT_TASK not in app.tasks


@pytest.mark.usefixtures("demo_jobs")
@pytest.mark.parametrize(
    ("queue", "reason"),
    [
        ("nosuchqueue", r"no task module for queue\(s\) nosuchqueue \(installed: .*testjobs"),
        ("testbroken", r"'testbroken' failed to register: ValueError\('this task module is"),
        ("testmissing", r"tessera_demo_jobs_not_installed:register of queue 'testmissing' fail"),
    ],
)
def test_jobs_a_queue_whose_module_cannot_register_stops_the_start(queue: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as caught:
        create_celery_app(_settings(), queues=["core", queue])
    assert caught.value.source == "tessera.jobs"


def test_jobs_worker_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_WORKER_QUEUES", "core, registry")
    monkeypatch.setenv("TESSERA_WORKER_CONCURRENCY", "4")
    monkeypatch.setenv("TESSERA_HEARTBEAT_INTERVAL_S", "0.5")
    settings = WorkerSettings()
    assert settings.worker_queues == ["core", "registry"]
    assert settings.worker_concurrency == 4
    assert settings.heartbeat_interval_s == 0.5
    monkeypatch.setenv("TESSERA_WORKER_CONCURRENCY", "0")
    with pytest.raises(ConfigError, match="TESSERA_WORKER_CONCURRENCY"):
        WorkerSettings.from_env()


@pytest.mark.usefixtures("demo_jobs")
def test_jobs_tasks_of_one_app_do_not_leak_into_the_next() -> None:
    first = create_celery_app(_settings(), queues=["testjobs"])
    second = create_celery_app(_settings(), queues=())
    assert "tessera.testjobs.write" in first.tasks
    assert "tessera.testjobs.write" not in second.tasks


def test_jobs_public_api_is_pinned() -> None:
    import tessera.core.jobs as package

    assert package.__all__ == [
        "CORE_QUEUE",
        "HEARTBEAT_KEY",
        "HEARTBEAT_TASK",
        "JOBS_GROUP",
        "Heartbeat",
        "JobContext",
        "WorkerSettings",
        "beat_main",
        "create_celery_app",
        "installed_queues",
        "read_heartbeat",
        "route_task",
        "worker_main",
    ]
    assert all(hasattr(package, name) for name in package.__all__)
