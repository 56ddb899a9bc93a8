import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from google.protobuf import json_format
from rich.console import Console
from rich.table import Table

from tessera.client.cli._service_cli import JsonOption, default_target, run_with
from tessera.client.lock import Leader, LockClient, Mode
from tessera.core import ValidationError
from tessera.proto.lock.v1 import lock_pb2

T = TypeVar("T")

lock_app = typer.Typer(
    help="Inspect and take locks of the lock service.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

TargetOption = Annotated[
    str,
    typer.Option(envvar="TESSERA_LOCK_TARGET", help="The lock service, host:port."),
]
DEFAULT_TARGET = default_target("lock")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Parse `10s`, `500ms`, `2m`, `1h` or a number of seconds.

    Raises:
        ValidationError: The text is not a duration.

    """
    match = _DURATION.match(text)
    if match is None:
        raise ValidationError(f"{text!r} is not a duration such as 10s, 500ms, 2m or 1h")
    return float(match[1]) * _UNIT_S[match[2] or "s"]


@lock_app.command("ls")
def list_locks(
    prefix: Annotated[str, typer.Argument(help="Only locks whose name starts with this.")] = "",
    target: TargetOption = DEFAULT_TARGET,
    as_json: JsonOption = False,
) -> None:
    """List held or awaited locks (and semaphores, with their permits), holders and waiters."""
    locks = _with_client(target, lambda client: client.list(prefix))
    if as_json:
        typer.echo(json.dumps([_as_dict(lock) for lock in locks], indent=2))
        return
    table = Table(title=f"locks under {prefix!r}", title_justify="left")
    for column in ("name", "holders", "tokens", "waiters", "permits"):
        table.add_column(column)
    for lock in locks:
        table.add_row(
            lock.name,
            ", ".join(holder.session_id for holder in lock.holders),
            ", ".join(str(holder.token) for holder in lock.holders),
            str(len(lock.waiters)),
            str(lock.permits) if lock.permits else "",
        )
    Console().print(table)


@lock_app.command("describe")
def describe(
    name: Annotated[str, typer.Argument(help="The lock.")],
    target: TargetOption = DEFAULT_TARGET,
    as_json: JsonOption = False,
) -> None:
    """Show a lock's holders and waiters: position, session, mode, token, holds, expiry, value."""
    lock = _with_client(target, lambda client: client.describe(name))
    if as_json:
        typer.echo(json.dumps(_as_dict(lock), indent=2))
        return
    table = Table(title=f"lock {name!r}", title_justify="left")
    for column in ("position", "session", "mode", "token", "holds", "lease expires", "value"):
        table.add_column(column)
    for entry in [*lock.holders, *lock.waiters]:
        table.add_row(
            "holder" if entry.queue_position == 0 else str(entry.queue_position),
            entry.session_id,
            lock_pb2.LockMode.Name(entry.mode).removeprefix("LOCK_MODE_").lower(),
            str(entry.token),
            str(max(entry.holds, 1)),
            entry.lease_expires_at.ToDatetime().isoformat()
            if entry.HasField("lease_expires_at")
            else "",
            entry.value.decode(errors="replace"),
        )
    Console().print(table)


@lock_app.command("acquire")
def acquire(
    name: Annotated[str, typer.Argument(help="The lock.")],
    hold: Annotated[str, typer.Option(help="How long to hold it, e.g. 10s.")] = "10s",
    ttl: Annotated[str, typer.Option(help="Session TTL, e.g. 10s.")] = "10s",
    wait: Annotated[str, typer.Option(help="How long to wait for it, e.g. 30s.")] = "30s",
    mode: Annotated[str, typer.Option(help="exclusive or shared.")] = "exclusive",
    lock_delay: Annotated[
        str, typer.Option(help="Lock-delay after an expiry (0-60s), e.g. 5s.")
    ] = "0s",
    target: TargetOption = DEFAULT_TARGET,
) -> None:
    """Take a lock, print its fencing token, hold it for `--hold`, then release it.

    Exits 1 if the lock was not granted within `--wait` or was lost while held.
    """
    hold_s, ttl_s, wait_s = parse_duration(hold), parse_duration(ttl), parse_duration(wait)
    lock_delay_s = parse_duration(lock_delay)
    if mode not in ("exclusive", "shared"):
        raise ValidationError(f"--mode must be exclusive or shared, not {mode!r}")
    lock_mode: Mode = "shared" if mode == "shared" else "exclusive"

    async def hold_lock(client: LockClient) -> bool:
        async with client.lock(
            name, ttl=ttl_s, mode=lock_mode, wait=wait_s, lock_delay=lock_delay_s
        ) as held:
            typer.echo(f"acquired {name!r} token={held.token} session={held.session.id}")
            return await _kept(name, held.token, held.wait_lost(), hold_s)

    if not _with_client(target, hold_lock):
        raise typer.Exit(1)
    typer.echo(f"released {name!r}")


@lock_app.command("semaphore")
def semaphore(
    name: Annotated[str, typer.Argument(help="The semaphore.")],
    permits: Annotated[int, typer.Option(help="The semaphore's size (1-1024).")],
    hold: Annotated[str, typer.Option(help="How long to hold the permit, e.g. 10s.")] = "10s",
    ttl: Annotated[str, typer.Option(help="Session TTL, e.g. 10s.")] = "10s",
    wait: Annotated[str, typer.Option(help="How long to wait for a permit, e.g. 30s.")] = "30s",
    target: TargetOption = DEFAULT_TARGET,
) -> None:
    """Take one permit of a semaphore, print its token, hold it for `--hold`, then give it back.

    Exits 1 if no permit was granted within `--wait` or the permit was lost while held.
    """
    hold_s, ttl_s, wait_s = parse_duration(hold), parse_duration(ttl), parse_duration(wait)

    async def hold_permit(client: LockClient) -> bool:
        async with client.semaphore(name, permits=permits, ttl=ttl_s, wait=wait_s) as held:
            typer.echo(f"acquired a permit of {name!r} token={held.token}")
            return await _kept(name, held.token, held.wait_lost(), hold_s)

    if not _with_client(target, hold_permit):
        raise typer.Exit(1)
    typer.echo(f"released a permit of {name!r}")


@lock_app.command("campaign")
def campaign(
    name: Annotated[str, typer.Argument(help="The election.")],
    value: Annotated[str, typer.Option(help="The value to lead with.")] = "",
    hold: Annotated[str, typer.Option(help="How long to lead, e.g. 10s.")] = "10s",
    ttl: Annotated[str, typer.Option(help="Session TTL, e.g. 10s.")] = "10s",
    wait: Annotated[str, typer.Option(help="How long to wait to be elected, e.g. 30s.")] = "30s",
    target: TargetOption = DEFAULT_TARGET,
) -> None:
    """Campaign in an election, lead for `--hold` once elected, then resign.

    Exits 1 if not elected within `--wait` or leadership was lost meanwhile.
    """
    hold_s, ttl_s, wait_s = parse_duration(hold), parse_duration(ttl), parse_duration(wait)

    async def lead(client: LockClient) -> bool:
        async with client.campaign(name, value.encode(), ttl=ttl_s, wait=wait_s) as leading:
            typer.echo(f"elected {name!r} token={leading.token}")
            return await _kept(name, leading.token, leading.wait_lost(), hold_s)

    if not _with_client(target, lead):
        raise typer.Exit(1)
    typer.echo(f"resigned {name!r}")


@lock_app.command("leader")
def leader(
    name: Annotated[str, typer.Argument(help="The election.")],
    target: TargetOption = DEFAULT_TARGET,
    as_json: JsonOption = False,
) -> None:
    """Show the leader of an election and its value (nothing printed as text when none)."""
    found = _with_client(target, lambda client: client.leader(name))
    if as_json:
        typer.echo(json.dumps(None if found is None else _leader_dict(found)))
    elif found is not None:
        typer.echo(
            f"{found.session_id} token={found.token} value={found.value.decode(errors='replace')}"
        )


@lock_app.command("observe")
def observe(
    name: Annotated[str, typer.Argument(help="The election.")],
    count: Annotated[int, typer.Option(help="Stop after this many changes (0: never).")] = 0,
    target: TargetOption = DEFAULT_TARGET,
) -> None:
    """Print the leader of an election (JSON, one line each) now and at every change."""

    async def follow(client: LockClient) -> None:
        seen = 0
        async for found in client.observe(name):
            typer.echo(json.dumps(None if found is None else _leader_dict(found)))
            seen += 1
            if seen == count:
                return

    _with_client(target, follow)


@lock_app.command("release")
def release(
    name: Annotated[str, typer.Argument(help="The lock.")],
    session: Annotated[str, typer.Option(help="The holding session's id.")],
    token: Annotated[int, typer.Option(help="The grant's fencing token.")],
    target: TargetOption = DEFAULT_TARGET,
) -> None:
    """Release a grant held by a session (owner only); releasing it twice is not an error."""
    released = _with_client(target, lambda client: client.release_grant(name, session, token))
    typer.echo(f"released {name!r}" if released else f"{name!r} token={token} was already gone")


async def _kept(name: str, token: int, lost: Awaitable[None], hold_s: float) -> bool:
    """Wait `hold_s` unless `lost` completes first; say so and return False if it did."""
    try:
        async with asyncio.timeout(hold_s):
            await lost
    except TimeoutError:
        return True
    typer.echo(f"LOST {name!r} token={token}", err=True)
    return False


def _leader_dict(found: Leader) -> dict[str, Any]:
    return {
        "session_id": found.session_id,
        "token": found.token,
        "value": found.value.decode(errors="replace"),
    }


def _with_client(target: str, action: Callable[[LockClient], Awaitable[T]]) -> T:
    return run_with(lambda: LockClient.connect(target), action)


def _as_dict(lock: lock_pb2.LockDescription) -> dict[str, Any]:
    return json_format.MessageToDict(lock, preserving_proto_field_name=True)
