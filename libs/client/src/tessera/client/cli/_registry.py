import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from google.protobuf import json_format
from rich.console import Console
from rich.table import Table

from tessera.client.cli._service_cli import JsonOption, default_target, run_with
from tessera.client.registry import Registration, RegistryClient, read_stats
from tessera.core import TesseraSettings
from tessera.core.redis import connect_redis
from tessera.proto.registry.v1 import registry_pb2

T = TypeVar("T")

registry_app = typer.Typer(
    help="Inspect and change the service registry.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

TargetOption = Annotated[
    str,
    typer.Option(
        "--target",
        envvar="TESSERA_REGISTRY_TARGET",
        help="Registry replicas, comma-separated host:port.",
    ),
]
DEFAULT_TARGET = default_target("registry")
SelectorOption = Annotated[
    str, typer.Option("--selector", "-l", help="Label selector: `zone=a,version in (v1,v2)`.")
]


def _run(target: str, call: Callable[[RegistryClient], Awaitable[T]]) -> T:
    targets = [t.strip() for t in target.split(",") if t.strip()]
    return run_with(lambda: RegistryClient(targets), call)


def _as_json(message: registry_pb2.Instance | registry_pb2.WatchResponse) -> str:
    return json.dumps(json_format.MessageToDict(message), sort_keys=True)


@registry_app.command("ls")
def list_instances(
    namespace: Annotated[str, typer.Argument(help="Only this namespace (default: all).")] = "",
    service: Annotated[
        str, typer.Argument(help="List this service's instances instead of the services.")
    ] = "",
    selector: SelectorOption = "",
    target: TargetOption = DEFAULT_TARGET,
    as_json: JsonOption = False,
) -> None:
    """List the services (of a namespace), or the instances of one service with their health."""
    if not service:
        _list_services(namespace, target, as_json=as_json)
        return
    listed = _run(target, lambda client: client.list(namespace, service, selector))
    view = listed.service
    if as_json:
        typer.echo(json.dumps(json_format.MessageToDict(listed), sort_keys=True, indent=2))
        return
    title = f"{namespace}/{service} at revision {listed.revision}"
    if view.maintenance:
        title += " — MAINTENANCE"
    if view.protected:
        title += " — PROTECTED"
    table = Table(title=title)
    for column in ("id", "address", "zone", "weight", "status", "healthy", "kind", "metadata"):
        table.add_column(column)
    for instance in view.instances:
        table.add_row(
            instance.id,
            f"{instance.host}:{instance.port}",
            instance.zone,
            f"{instance.weight:g}",
            registry_pb2.ServingStatus.Name(instance.status).removeprefix("SERVING_STATUS_"),
            "yes" if instance.healthy else "NO",
            "ephemeral" if instance.ephemeral else "persistent",
            ",".join(f"{k}={v}" for k, v in sorted(instance.metadata.items())),
        )
    Console().print(table)


def _list_services(namespace: str, target: str, *, as_json: bool) -> None:
    listed = _run(target, lambda client: client.list_services(namespace))
    if as_json:
        typer.echo(json.dumps(json_format.MessageToDict(listed), sort_keys=True, indent=2))
        return
    table = Table(title=f"{namespace or 'all namespaces'} at revision {listed.revision}")
    for column in ("namespace", "service", "instances", "eligible", "flags"):
        table.add_column(column)
    for summary in listed.services:
        flags = [
            flag
            for flag, on in (("MAINTENANCE", summary.maintenance), ("PROTECTED", summary.protected))
            if on
        ]
        table.add_row(
            summary.namespace,
            summary.service,
            str(summary.instances),
            str(summary.eligible),
            ",".join(flags),
        )
    Console().print(table)


@registry_app.command("stats")
def stats(
    namespace: Annotated[str, typer.Argument(help="Only this namespace (default: all).")] = "",
    redis_url: Annotated[
        str | None,
        typer.Option(help="The Redis of the registry's workers; default: TESSERA_REDIS_URL."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show the instance counts per service the registry leader's statistics job last computed.

    Exits 1 when there are none (no registry replica runs jobs, or no worker serves the queue
    `registry`, for `STATS_TTL_S`).
    """
    url = redis_url if redis_url is not None else TesseraSettings.from_env().redis_url
    found = run_with(lambda: connect_redis(url), read_stats)
    if found is None:
        typer.echo(
            f"no registry statistics in {url}: no registry leader runs jobs, or no worker "
            "serves the queue `registry`",
            err=True,
        )
        raise typer.Exit(1)
    services = [s for s in found.services if not namespace or s.namespace == namespace]
    if as_json:
        document = dataclasses.replace(found, services=tuple(services)).to_document()
        typer.echo(json.dumps(document, sort_keys=True, indent=2))
        return
    age_s = max(time.time() - found.at, 0.0)
    table = Table(title=f"computed {age_s:.0f} s ago at revision {found.revision}")
    columns = ("namespace", "service", "instances", "healthy", "serving", "ephemeral", "persistent")
    for column in columns:
        table.add_column(column)
    for service in services:
        table.add_row(*(str(getattr(service, column)) for column in columns))
    Console().print(table)


@registry_app.command("watch")
def watch(
    namespace: str,
    service: str,
    selector: SelectorOption = "",
    start_revision: Annotated[
        int, typer.Option(help="Replay from this revision (0: start with a snapshot).")
    ] = 0,
    target: TargetOption = DEFAULT_TARGET,
) -> None:
    """Print the selected instances, then every change, one JSON object per line (Ctrl-C ends)."""

    async def follow(client: RegistryClient) -> None:
        async for response in client.watch(namespace, service, selector, start_revision):
            typer.echo(_as_json(response))

    with contextlib.suppress(KeyboardInterrupt):
        _run(target, follow)


@registry_app.command("register")
def register(
    namespace: str,
    service: str,
    host: str,
    port: int,
    instance_id: Annotated[str, typer.Option("--id", help="Instance id; generated if empty.")] = "",
    zone: Annotated[str, typer.Option(help="Availability zone.")] = "",
    weight: Annotated[float, typer.Option(help="Relative share of traffic.")] = 1.0,
    metadata: Annotated[
        list[str] | None, typer.Option("--meta", "-m", help="Metadata key=value (repeatable).")
    ] = None,
    keep_alive: Annotated[
        bool,
        typer.Option(
            "--keep-alive",
            help="Register as ephemeral and heartbeat until Ctrl-C, then deregister. Without "
            "it the instance is persistent and stays until `deregister`.",
        ),
    ] = False,
    target: TargetOption = DEFAULT_TARGET,
) -> None:
    """Register an instance and print its id."""
    labels = dict(item.split("=", 1) for item in metadata or [] if "=" in item)
    spec = registry_pb2.Instance(
        namespace=namespace,
        service=service,
        id=instance_id,
        host=host,
        port=port,
        zone=zone,
        weight=weight,
        metadata=labels,
    )

    async def persistent(client: RegistryClient) -> str:
        return (await client.register(spec)).id

    async def ephemeral(client: RegistryClient) -> str:
        async with Registration(client) as registration:
            new_id = await registration.add(spec)
            typer.echo(new_id)
            await asyncio.get_running_loop().create_future()  # until Ctrl-C
        return new_id

    if not keep_alive:
        typer.echo(_run(target, persistent))
        return
    with contextlib.suppress(KeyboardInterrupt):
        _run(target, ephemeral)


@registry_app.command("drain")
def drain(
    namespace: str,
    service: str,
    instance_id: str,
    undo: Annotated[bool, typer.Option("--undo", help="Put the instance back to SERVING.")] = False,
    target: TargetOption = DEFAULT_TARGET,
) -> None:
    """Stop new traffic to an instance (status DRAINING), or resume it with --undo."""
    status = registry_pb2.SERVING_STATUS_SERVING if undo else registry_pb2.SERVING_STATUS_DRAINING
    revision = _run(
        target, lambda client: client.set_status(namespace, service, instance_id, status)
    )
    typer.echo(f"{instance_id}: {registry_pb2.ServingStatus.Name(status)} at revision {revision}")


@registry_app.command("deregister")
def deregister(
    namespace: str, service: str, instance_id: str, target: TargetOption = DEFAULT_TARGET
) -> None:
    """Remove an instance."""
    revision = _run(target, lambda client: client.deregister(namespace, service, instance_id))
    typer.echo(f"{instance_id}: removed at revision {revision}")


@registry_app.command("resolve")
def resolve(
    namespace: str,
    service: str,
    selector: SelectorOption = "",
    balancer: Annotated[str, typer.Option(help="A tessera.balancers plugin.")] = "round_robin",
    key: Annotated[str, typer.Option(help="Affinity key for hash balancers.")] = "",
    target: TargetOption = DEFAULT_TARGET,
    as_json: JsonOption = False,
) -> None:
    """Have the registry pick one eligible instance and print host:port."""
    reply = _run(
        target,
        lambda client: client.resolve(
            namespace, service, selector=selector, balancer=balancer, hash_key=key.encode()
        ),
    )
    if as_json:
        typer.echo(_as_json(reply.instance))
    else:
        suffix = " (protected)" if reply.protected else ""
        typer.echo(f"{reply.instance.host}:{reply.instance.port} {reply.instance.id}{suffix}")
