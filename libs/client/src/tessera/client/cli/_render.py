from collections.abc import Iterable

from rich.table import Table
from rich.text import Text

from tessera.client.devstack import ComponentStatus, Health

_HEALTH_STYLE = {
    Health.STARTING: "yellow",
    Health.HEALTHY: "bold green",
    Health.UNHEALTHY: "bold red",
    Health.FAILED: "bold red reverse",
    Health.STOPPED: "dim",
}


def health_text(health: Health) -> Text:
    """Render the health word, coloured by state."""
    return Text(health.value, style=_HEALTH_STYLE[health])


def component_table(
    statuses: Iterable[ComponentStatus], *, title: str | None = None, caption: str | None = None
) -> Table:
    """Build a table of components: name, pid, endpoint, health, and why when not healthy."""
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    table.add_column("component", style="bold")
    table.add_column("pid", justify="right")
    table.add_column("endpoint")
    table.add_column("health")
    table.add_column("detail", overflow="fold")
    for status in statuses:
        detail = status.detail
        if status.health is Health.FAILED and status.log is not None:
            detail = f"{detail} (log: {status.log})" if detail else f"log: {status.log}"
        table.add_row(
            status.name,
            "" if status.pid is None else str(status.pid),
            status.endpoint,
            health_text(status.health),
            detail,
        )
    return table


def status_line(status: ComponentStatus) -> str:
    """One plain line describing a component's health, for logs and non-terminal output."""
    line = f"{status.name}: {status.health.value}"
    if status.detail:
        line += f" ({status.detail})"
    if status.health is Health.FAILED and status.log is not None:
        line += f"; log: {status.log}"
    return line
