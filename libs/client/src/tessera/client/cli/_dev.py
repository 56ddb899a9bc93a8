import asyncio
import signal
from contextlib import suppress
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tessera.client.cli._stack_view import LineView, LiveView, StackView
from tessera.client.devstack import DevStack, DevStackConfig, StackPorts, discover_services
from tessera.core import TesseraError

_REFRESH_S = 1.0

dev_app = typer.Typer(
    help="Run Tessera locally.", no_args_is_help=True, rich_markup_mode="markdown"
)

DataDirOption = Annotated[
    Path,
    typer.Option(
        "--data-dir", help="Holds etcd and Redis data, logs and stack.json.", file_okay=False
    ),
]
DEFAULT_DATA_DIR = Path(".tessera")


@dev_app.command("up")
def up(
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    port_offset: Annotated[
        int, typer.Option(help="Added to every design port, to run a second stack beside one.")
    ] = 0,
    etcd_port: Annotated[
        int | None, typer.Option(help="etcd client port (not shifted by --port-offset).")
    ] = None,
    redis_port: Annotated[
        int | None, typer.Option(help="Redis port (not shifted by --port-offset).")
    ] = None,
    no_services: Annotated[
        bool, typer.Option("--no-services", help="Run etcd, Redis, worker and beat only.")
    ] = False,
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="Mirror deploy/docker-compose.yml: a 3-member etcd cluster (client ports etcd, "
            "+2, +4) and two replicas of registry, lock and ratelimit (the second on the design "
            "ports + 100).",
        ),
    ] = False,
) -> None:
    """Run etcd, Redis, every installed service, a Celery worker and beat until Ctrl-C.

    Shows the health of each component, refreshed every second (on a terminal; otherwise the table
    once everything is healthy, then one line per change). Ctrl-C or SIGTERM stops the services
    first, so they drain, then worker and beat, then Redis and etcd; the exit code is then 0.
    """
    services = {} if no_services else discover_services()
    ports = StackPorts.plan(
        services, offset=port_offset, etcd=etcd_port, redis=redis_port, cluster=cluster
    )
    config = DevStackConfig(data_dir=data_dir.resolve(), ports=ports, services=services)
    console = Console()
    log = Console(stderr=True)
    view: StackView = (
        LiveView(console, config.data_dir)
        if console.is_terminal
        else LineView(console, config.data_dir)
    )
    raise typer.Exit(asyncio.run(_supervise(DevStack(config), view, log)))


async def _supervise(stack: DevStack, view: StackView, log: Console) -> int:
    """Start the stack, refresh the view every second until a stop signal, then stop the stack."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def progress(message: str) -> None:
        log.print(message, style="dim", highlight=False, soft_wrap=True)

    try:
        try:
            await stack.start(abort=stop, progress=progress)
        except TesseraError as error:
            log.print(f"error: {error}", style="bold red", highlight=False, soft_wrap=True)
            return 1
        while not stop.is_set():
            next_refresh = loop.time() + _REFRESH_S
            view.update(await stack.check())
            with suppress(TimeoutError):
                async with asyncio.timeout_at(next_refresh):
                    await stop.wait()
    finally:
        view.close()
        await stack.stop(progress)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    progress("stack stopped")
    return 0
