import json
from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tessera.core.plugins import PluginSet, load_all

plugins_app = typer.Typer(
    help="Inspect installed plugins.", no_args_is_help=True, rich_markup_mode="markdown"
)


@plugins_app.command("list")
def list_plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """List every plugin family: installed plugins, their distribution and version, and failures.

    Plugins that failed to load are reported, marked FAILED with the error; the command still
    exits 0, since reporting them is its job.
    """
    sets = load_all()
    if as_json:
        typer.echo(json.dumps(plugins_document(sets), indent=2))
        return
    console = Console()
    for plugin_set in sets.values():
        console.print(_family_table(plugin_set))
    failed = sum(len(plugin_set.failures) for plugin_set in sets.values())
    if failed:
        console.print(Text(f"{failed} plugin(s) FAILED to load", style="bold red"))


def plugins_document(sets: Mapping[str, PluginSet[Any]]) -> dict[str, Any]:
    """Build the JSON form of ``tessera plugins list``: per group, its plugins and failures."""
    return {
        group: {
            "family": plugin_set.family.name,
            "description": plugin_set.family.description,
            "plugins": [
                {
                    "name": plugin.name,
                    "value": plugin.value,
                    "distribution": plugin.distribution,
                    "version": plugin.version,
                }
                for plugin in sorted(plugin_set.loaded.values(), key=lambda p: p.name)
            ],
            "failures": [
                {"name": name, "plugin": error.plugin, "group": error.group, "error": str(error)}
                for name, error in sorted(plugin_set.failures.items())
            ],
        }
        for group, plugin_set in sets.items()
    }


def _family_table(plugin_set: PluginSet[Any]) -> Table:
    family = plugin_set.family
    table = Table(title=f"{family.group} — {family.description}", title_justify="left")
    table.add_column("plugin", style="bold")
    table.add_column("status")
    table.add_column("distribution")
    table.add_column("version")
    table.add_column("entry point / error", overflow="fold")
    for plugin in sorted(plugin_set.loaded.values(), key=lambda p: p.name):
        table.add_row(
            plugin.name,
            Text("ok", style="green"),
            plugin.distribution or "",
            plugin.version or "",
            plugin.value,
        )
    for name, error in sorted(plugin_set.failures.items()):
        table.add_row(name, Text("FAILED", style="bold red"), "", "", Text(str(error), "red"))
    if not plugin_set.loaded and not plugin_set.failures:
        table.add_row(Text("none installed", style="dim"), "", "", "", "")
    return table
