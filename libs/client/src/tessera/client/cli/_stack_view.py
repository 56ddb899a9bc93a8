import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from rich.console import Console
from rich.live import Live

from tessera.client.cli._render import component_table, status_line
from tessera.client.devstack import ComponentStatus, Health


class StackView(Protocol):
    """Shows the health of a running stack to the user; called once per refresh."""

    def update(self, statuses: Sequence[ComponentStatus]) -> None:
        """Show the latest statuses."""

    def close(self) -> None:
        """Stop showing (the stack is stopping)."""


def _title(data_dir: Path) -> str:
    return f"tessera dev up — {data_dir} — Ctrl-C stops the stack"


class LiveView:
    """A table redrawn in place, for a terminal."""

    def __init__(self, console: Console, data_dir: Path) -> None:
        self._title = _title(data_dir)
        self._live = Live(console=console, auto_refresh=False, transient=False)
        self._live.start()

    def update(self, statuses: Sequence[ComponentStatus]) -> None:
        """Redraw the table."""
        checked = f"checked at {time.strftime('%H:%M:%S')}"
        self._live.update(
            component_table(statuses, title=self._title, caption=checked), refresh=True
        )

    def close(self) -> None:
        """Leave the last table on screen."""
        self._live.stop()


class LineView:
    """Plain output for scripts and tests, where stdout is not a terminal.

    Prints the table once, when every component is healthy for the first time, then one line per
    health change. Before that, only failures are printed, so a stack that never becomes healthy
    still says why.
    """

    def __init__(self, console: Console, data_dir: Path) -> None:
        self._console = console
        self._title = _title(data_dir)
        self._last: dict[str, Health] = {}
        self._reported_healthy = False

    def update(self, statuses: Sequence[ComponentStatus]) -> None:
        """Print what changed since the previous call."""
        if not self._reported_healthy and all(s.health is Health.HEALTHY for s in statuses):
            self._console.print(component_table(statuses, title=self._title))
            self._console.print(f"all {len(statuses)} components healthy")
            self._reported_healthy = True
        else:
            for status in statuses:
                if status.health is self._last.get(status.name):
                    continue
                if self._reported_healthy or status.health is Health.FAILED:
                    self._console.print(status_line(status), soft_wrap=True)
        self._last = {status.name: status.health for status in statuses}
        self._console.file.flush()

    def close(self) -> None:
        """Nothing to tear down: lines are already out."""
