from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from celery import signals

from tessera.core._errors import ConfigError
from tessera.core.jobs._app import create_celery_app, installed_queues
from tessera.core.jobs._settings import WorkerSettings
from tessera.core.observability import configure_logging, configure_tracing

_POOLS = ("prefork", "solo", "threads")


def worker_main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run a Celery worker for Tessera's queues (console script `tessera-worker`).

    Options (each overrides the `TESSERA_*` setting named after it): `-Q/--queues a,b`
    (`worker_queues`; default every installed queue), `-c/--concurrency N`
    (`worker_concurrency`), `-l/--loglevel LEVEL` (`log_level`), `-n/--hostname NAME` (Celery's
    node name, default `celery@<host>`), `-P/--pool prefork|solo|threads` (default prefork).
    Logs go through `tessera.core.observability` (JSON by default); tracing is set up in each
    pool process when `trace_exporter` is not "none". Returns the worker's exit code to the shell.

    Args:
        argv: Command-line arguments without the program name; `sys.argv[1:]` when None.

    """
    parser = argparse.ArgumentParser(prog="tessera-worker", description=worker_main.__doc__)
    parser.add_argument("-Q", "--queues", help="comma-separated queues (services) to serve")
    parser.add_argument("-c", "--concurrency", type=int, help="task processes")
    parser.add_argument("-l", "--loglevel", help="DEBUG, INFO, WARNING, ERROR or CRITICAL")
    parser.add_argument("-n", "--hostname", help="Celery node name, e.g. core@%%h")
    parser.add_argument("-P", "--pool", choices=_POOLS, default="prefork")
    options = parser.parse_args(argv)
    settings = _settings(
        parser,
        worker_queues=options.queues,
        worker_concurrency=options.concurrency,
        log_level=options.loglevel,
    )
    queues = settings.worker_queues or installed_queues()
    app = _app(parser, settings, queues)
    _hook_logging(settings)
    if settings.trace_exporter != "none":
        # Spans are exported by a thread, which does not survive a fork: set tracing up in
        # each pool process, or in the worker itself when tasks run there.
        signal = signals.worker_process_init if options.pool == "prefork" else signals.worker_init
        _hook_tracing(signal, settings)
    command = [
        "worker",
        f"--queues={','.join(queues)}",
        f"--concurrency={settings.worker_concurrency}",
        f"--pool={options.pool}",
        f"--loglevel={settings.log_level}",
        # Mingle and gossip sync revoked tasks and clocks between workers at start-up, which
        # delays every start by seconds; Tessera's tasks do not rely on either.
        "--without-mingle",
        "--without-gossip",
    ]
    if options.hostname:
        command.append(f"--hostname={options.hostname}")
    sys.exit(app.start(command))


def beat_main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run Celery beat, which sends the scheduled tasks (console script `tessera-beat`).

    Options: `--data-dir DIR` (`beat_data_dir`), where the schedule state file
    `celerybeat-schedule` lives; `-l/--loglevel LEVEL` (`log_level`). The schedule is every
    entry the installed task modules add with `JobContext.schedule`. Run exactly one beat per
    deployment, or tasks are sent once per beat.

    Args:
        argv: Command-line arguments without the program name; `sys.argv[1:]` when None.

    """
    parser = argparse.ArgumentParser(prog="tessera-beat", description=beat_main.__doc__)
    parser.add_argument("--data-dir", type=Path, help="directory of the schedule state file")
    parser.add_argument("-l", "--loglevel", help="DEBUG, INFO, WARNING, ERROR or CRITICAL")
    options = parser.parse_args(argv)
    settings = _settings(parser, beat_data_dir=options.data_dir, log_level=options.loglevel)
    app = _app(parser, settings, installed_queues())
    _hook_logging(settings)
    if settings.trace_exporter != "none":
        _hook_tracing(signals.beat_init, settings)
    settings.beat_data_dir.mkdir(parents=True, exist_ok=True)
    schedule_file = settings.beat_data_dir / "celerybeat-schedule"
    sys.exit(app.start(["beat", f"--schedule={schedule_file}", f"--loglevel={settings.log_level}"]))


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run `python -m tessera.core.jobs worker|beat [options]`, as the two console scripts."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    commands = {"worker": worker_main, "beat": beat_main}
    if not arguments or arguments[0] not in commands:
        sys.exit("usage: python -m tessera.core.jobs {worker,beat} [options] (--help for each)")
    commands[arguments[0]](arguments[1:])


def _settings(parser: argparse.ArgumentParser, **overrides: Any) -> WorkerSettings:
    try:
        return WorkerSettings.from_env(
            **{name: value for name, value in overrides.items() if value is not None}
        )
    except ConfigError as error:
        parser.exit(2, f"{parser.prog}: {error}\n")


def _app(parser: argparse.ArgumentParser, settings: WorkerSettings, queues: list[str]) -> Any:
    try:
        return create_celery_app(settings, queues=queues)
    except ConfigError as error:
        parser.exit(2, f"{parser.prog}: {error}\n")


def _hook_logging(settings: WorkerSettings) -> None:
    # Any receiver of setup_logging stops Celery from configuring logging itself, so worker and
    # beat log lines look like every other Tessera process's.
    def setup_logging(**_: Any) -> None:
        configure_logging(settings)

    signals.setup_logging.connect(setup_logging, weak=False)


def _hook_tracing(signal: Any, settings: WorkerSettings) -> None:
    def set_up_tracing(**_: Any) -> None:
        configure_tracing(settings)

    signal.connect(set_up_tracing, weak=False)
