from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from tessera.core._settings import TesseraSettings


class WorkerSettings(TesseraSettings):
    """Settings of a Celery worker or beat process (and of any process that sends tasks).

    Read from `TESSERA_*` like every Tessera setting; the broker and result backend are
    `redis_url`. Every default of the job system lives here.
    """

    service_name: str = Field(default="tessera-worker", min_length=1)
    """OpenTelemetry `service.name` and the `service` field of log lines."""
    worker_queues: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Queues (= services) a worker serves, comma-separated; empty serves every installed one."""
    worker_concurrency: int = Field(default=2, ge=1)
    """Worker processes that run tasks at once."""
    heartbeat_interval_s: float = Field(default=5.0, gt=0)
    """How often beat schedules `tessera.core.heartbeat`; the key lives three intervals."""
    visibility_timeout_s: float = Field(default=3600.0, gt=0)
    """A task taken by a worker that vanished is delivered again after this long; must exceed the
    longest task, or a slow task runs twice."""
    beat_data_dir: Path = Path(".tessera/beat")
    """Where beat keeps its schedule state (`celerybeat-schedule`)."""

    @field_validator("worker_queues", mode="before")
    @classmethod
    def _split_queues(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
