"""Entry points that run a `ServiceServer` until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypeVar

import structlog

from tessera.core._errors import TesseraError
from tessera.core._settings import TesseraSettings
from tessera.core.observability import configure_logging, configure_tracing
from tessera.core.server._busy_poll import event_loop_factory
from tessera.core.server._server import ServiceBinding, ServiceServer

_log = structlog.get_logger("tessera.core.server")

SettingsT = TypeVar("SettingsT", bound=TesseraSettings)

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def serve(settings: TesseraSettings, bindings: Sequence[ServiceBinding]) -> None:
    """Run a server for `bindings` until SIGTERM or SIGINT, then stop it gracefully.

    Configures logging from `settings`, and tracing unless `settings.trace_exporter` is
    `"none"` (spans nobody exports would only cost CPU), starts the server and waits. On the first
    SIGTERM or SIGINT the server stops as `ServiceServer.stop` describes, with
    `settings.shutdown_grace_s`; cancelling this coroutine stops it the same way. Must run in the
    main thread (signal handlers) of a Unix event loop.

    Args:
        settings: The process's settings.
        bindings: The services to run.

    Raises:
        ConfigError: The server cannot start (address in use, unreadable TLS file, ...).

    """
    _configure_observability(settings)
    server = ServiceServer(settings, bindings)
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()

    def request_stop(signum: signal.Signals) -> None:
        _log.info("stop requested", signal=signum.name)
        stop_requested.set()

    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, request_stop, signum)
    try:
        await server.start()
        await stop_requested.wait()
    finally:
        try:
            await server.stop()
        finally:
            for signum in _STOP_SIGNALS:
                loop.remove_signal_handler(signum)


def run(
    load_settings: Callable[[], SettingsT],
    open_bindings: Callable[[SettingsT], AbstractAsyncContextManager[Sequence[ServiceBinding]]],
) -> None:
    """Run a service process: settings, logging, resources, then `serve` (a `__main__`'s body).

    Reads the settings with `load_settings` (typically `<Service>Settings.from_env`), configures
    logging and tracing (as `serve` does), then in a new event loop (one that busy-polls when
    `settings.busy_poll_us` says so, `event_loop_factory`) enters
    `open_bindings(settings)` — the service's resources (backend clients, background tasks,
    self-registration) yielding its bindings, all living on the server's event loop — and serves
    them until SIGTERM or SIGINT. The resources are closed after the server has drained. Returns
    once stopped (exit status 0).

    Raises:
        SystemExit: With status 1 when the settings are invalid, a resource cannot be opened or the
            server cannot start; the reason is logged.

    """
    try:
        settings = load_settings()
        # Before the resources open: a gRPC channel (the etcd client's) is traced only when it is
        # created after tracing is configured.
        _configure_observability(settings)
        with asyncio.Runner(loop_factory=event_loop_factory(settings.busy_poll_us)) as runner:
            runner.run(_serve_opened(settings, open_bindings))
    except TesseraError as error:
        _log.error("service failed", error=type(error).__name__, message=error.message)
        raise SystemExit(1) from error


def _configure_observability(settings: TesseraSettings) -> None:
    # Both may run again (serve after run): logging is replaced, tracing set up once only.
    configure_logging(settings)
    if settings.trace_exporter != "none":
        # Spans nobody exports would still cost every call, about a fifth of a unary call's
        # server CPU in bench/floor.py; their ids in the logs would lead to no trace.
        configure_tracing(settings)


async def _serve_opened(
    settings: SettingsT,
    open_bindings: Callable[[SettingsT], AbstractAsyncContextManager[Sequence[ServiceBinding]]],
) -> None:
    async with open_bindings(settings) as bindings:
        await serve(settings, bindings)


def static_bindings(
    bindings: Sequence[ServiceBinding],
) -> Callable[[TesseraSettings], AbstractAsyncContextManager[Sequence[ServiceBinding]]]:
    """`open_bindings` for `run` when a service holds no resources of its own."""

    @asynccontextmanager
    async def opened(_: TesseraSettings) -> AsyncIterator[Sequence[ServiceBinding]]:
        yield bindings

    return opened
