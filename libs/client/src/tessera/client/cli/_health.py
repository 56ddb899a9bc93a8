import asyncio
from typing import Annotated

import typer

from tessera.client.devstack._jobs import probe_heartbeat
from tessera.client.devstack._probes import ProbeResult, probe_grpc_health
from tessera.core import TesseraSettings

# Services bind TesseraSettings.host, which may be a wildcard; a probe reaches them on loopback.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "[::]": "[::1]"}

health_app = typer.Typer(
    help="Probe one component and exit 0 when it is healthy, 1 otherwise (container health "
    "checks use these).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

TimeoutOption = Annotated[float, typer.Option(help="Seconds the probe may take.", min=0.1)]


@health_app.command("grpc")
def grpc_health(
    address: Annotated[
        str | None,
        typer.Argument(
            help="host:port of the server; default: TESSERA_HOST (loopback for a wildcard) and "
            "TESSERA_PORT, the server this container runs."
        ),
    ] = None,
    service: Annotated[
        str, typer.Option(help="Service name to check; empty checks the whole server.")
    ] = "",
    timeout: TimeoutOption = 2.0,
) -> None:
    """Call ``grpc.health.v1.Health/Check``; healthy when the answer is SERVING.

    A draining server (SIGTERM received) answers NOT_SERVING, so it turns unhealthy at once.
    """
    if address is None:
        settings = TesseraSettings.from_env()
        host = _WILDCARDS.get(settings.host, settings.host)
        address = f"{host}:{settings.port}"
    _exit_with(asyncio.run(probe_grpc_health(address, timeout, service)), address)


@health_app.command("heartbeat")
def heartbeat_health(
    redis_url: Annotated[
        str | None,
        typer.Option(help="The Celery broker holding the heartbeat; default: TESSERA_REDIS_URL."),
    ] = None,
    timeout: TimeoutOption = 2.0,
) -> None:
    """Read the job heartbeat: healthy when beat sent it and a ``core`` worker ran it recently."""
    url = redis_url if redis_url is not None else TesseraSettings.from_env().redis_url
    _exit_with(asyncio.run(probe_heartbeat(url, timeout)), "heartbeat")


def _exit_with(result: ProbeResult, target: str) -> None:
    if result.healthy:
        typer.echo(f"{target}: healthy")
        raise typer.Exit(0)
    typer.echo(f"{target}: unhealthy: {result.detail}", err=True)
    raise typer.Exit(1)
