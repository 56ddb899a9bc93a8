import asyncio
import json
from typing import Annotated, Any

import typer
from rich.console import Console

from tessera.client.cli._dev import DEFAULT_DATA_DIR, DataDirOption
from tessera.client.cli._render import component_table
from tessera.client.devstack import (
    MANIFEST_NAME,
    ComponentStatus,
    Health,
    StackManifest,
    check_components,
    default_components,
    discover_services,
)
from tessera.core import TesseraSettings


def status(
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds each probe may take.", min=0.1)] = 2.0,
) -> None:
    """Show the health of every component; exit 0 when all are healthy, 1 otherwise.

    The stack is the one ``tessera dev up`` recorded in ``<data-dir>/stack.json``; without that
    file, the endpoints come from the TESSERA_* settings and the design ports.
    """
    manifest = StackManifest.read(data_dir)
    if manifest is not None:
        components = list(manifest.components)
        source = str(data_dir / MANIFEST_NAME)
    else:
        components = default_components(TesseraSettings.from_env(), discover_services())
        source = "settings"
    statuses = asyncio.run(check_components(components, timeout))
    healthy = all(s.health is Health.HEALTHY for s in statuses)
    if as_json:
        typer.echo(json.dumps(status_document(statuses, source), indent=2))
    else:
        Console().print(component_table(statuses, title=f"tessera status — {source}"))
    raise typer.Exit(0 if healthy else 1)


def status_document(statuses: list[ComponentStatus], source: str) -> dict[str, Any]:
    """Build the JSON form of ``tessera status``."""
    return {
        "healthy": all(s.health is Health.HEALTHY for s in statuses),
        "source": source,
        "components": {
            s.name: {
                "kind": s.kind.value,
                "endpoint": s.endpoint,
                "health": s.health.value,
                "detail": s.detail,
                "pid": s.pid,
                "log": None if s.log is None else str(s.log),
            }
            for s in statuses
        },
    }
