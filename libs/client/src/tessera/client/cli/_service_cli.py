"""Plumbing shared by the commands that talk to one Tessera service (`gov`, `lock`, ...).

- `JsonOption`: the `--json` flag every listing command takes.
- `default_target(service)`: the service's gRPC address on this machine, as `tessera dev up`
  serves it (from `tessera.core.SERVICE_PORTS`).
- `run_with(open_client, call)`: run one async call with a client opened for it, from a
  command's synchronous body; the client is closed before the result is returned, and the
  call's errors propagate unchanged.
"""

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated, TypeVar

import typer

from tessera.core import SERVICE_PORTS

C = TypeVar("C")
T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def default_target(service: str) -> str:
    """Return `127.0.0.1:<port>` of a service of `tessera.core.SERVICE_PORTS` (KeyError if none)."""
    return f"127.0.0.1:{SERVICE_PORTS[service].port}"


def run_with(
    open_client: Callable[[], AbstractAsyncContextManager[C]], call: Callable[[C], Awaitable[T]]
) -> T:
    """Open a client, await `call(client)` on a new event loop, close the client, return."""

    async def main() -> T:
        async with open_client() as client:
            return await call(client)

    return asyncio.run(main())
