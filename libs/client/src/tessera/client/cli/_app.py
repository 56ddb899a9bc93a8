from typing import Annotated

import typer
from rich.console import Console

from tessera.client import __version__
from tessera.client.cli._dev import dev_app
from tessera.client.cli._governance import gov_app
from tessera.client.cli._health import health_app
from tessera.client.cli._lock import lock_app
from tessera.client.cli._plugins import plugins_app
from tessera.client.cli._ratelimit import ratelimit_app
from tessera.client.cli._registry import registry_app
from tessera.client.cli._status import status
from tessera.core import TesseraError, TesseraSettings
from tessera.core.observability import configure_logging

app = typer.Typer(
    name="tessera",
    help="Tessera: a pluggable control plane for microservices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Docstrings are wrapped at 100 columns; markdown joins the lines of a paragraph.
    rich_markup_mode="markdown",
)


@app.callback()
def _configure(
    log_level: Annotated[
        str,
        typer.Option(
            help="Lowest level of log lines (on stderr). Problems the command finds are part of "
            "its output, so the default shows only errors of the tool itself."
        ),
    ] = "ERROR",
) -> None:
    configure_logging(
        TesseraSettings.from_env(
            service_name="tessera-cli", log_format="console", log_level=log_level
        )
    )


app.add_typer(dev_app, name="dev")
app.add_typer(plugins_app, name="plugins")
app.add_typer(registry_app, name="registry")
app.add_typer(ratelimit_app, name="ratelimit")
app.add_typer(gov_app, name="gov")
app.add_typer(lock_app, name="lock")
app.add_typer(health_app, name="health")
app.command("status")(status)


@app.command("version")
def version() -> None:
    """Print the installed Tessera version."""
    typer.echo(f"tessera {__version__}")


def main() -> None:
    """Run the ``tessera`` command line (console-script entry point).

    A Tessera error (bad settings, an unreadable stack.json, a port in use) ends the command with
    its message on stderr and exit code 1, without a traceback.
    """
    try:
        app()
    except TesseraError as error:
        Console(stderr=True).print(f"error: {error}", style="bold red", highlight=False)
        raise SystemExit(1) from None
