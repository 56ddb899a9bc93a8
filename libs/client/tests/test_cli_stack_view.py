import io
from pathlib import Path

from rich.console import Console

from tessera.client.cli._stack_view import LineView
from tessera.client.devstack import ComponentKind, ComponentStatus, Health


def _status(name: str, health: Health, detail: str = "") -> ComponentStatus:
    return ComponentStatus(
        name=name,
        kind=ComponentKind.SERVICE,
        endpoint="127.0.0.1:1",
        health=health,
        detail=detail,
        pid=42,
        log=Path(f"/logs/{name}.log"),
    )


def _view() -> tuple[LineView, io.StringIO]:
    out = io.StringIO()
    return LineView(Console(file=out, width=200), Path("/data")), out


def test_nothing_is_printed_while_components_start() -> None:
    view, out = _view()

    view.update([_status("a", Health.STARTING), _status("b", Health.HEALTHY)])
    view.update([_status("a", Health.STARTING), _status("b", Health.HEALTHY)])

    assert out.getvalue() == ""


def test_table_once_when_all_healthy_then_one_line_per_change() -> None:
    view, out = _view()
    view.update([_status("a", Health.STARTING), _status("b", Health.HEALTHY)])

    view.update([_status("a", Health.HEALTHY), _status("b", Health.HEALTHY)])
    table = out.getvalue()
    view.update([_status("a", Health.HEALTHY), _status("b", Health.HEALTHY)])
    view.update([_status("a", Health.UNHEALTHY, "NOT_SERVING"), _status("b", Health.HEALTHY)])
    view.update([_status("a", Health.HEALTHY), _status("b", Health.HEALTHY)])

    assert "all 2 components healthy" in table
    assert "127.0.0.1:1" in table
    assert out.getvalue()[len(table) :].splitlines() == [
        "a: unhealthy (NOT_SERVING)",
        "a: healthy",
    ]


def test_failure_before_healthy_is_printed_once_with_its_log() -> None:
    view, out = _view()

    view.update([_status("a", Health.STARTING)])
    view.update([_status("a", Health.FAILED, "exited with code 1")])
    view.update([_status("a", Health.FAILED, "exited with code 1")])

    assert out.getvalue().splitlines() == [
        "a: failed (exited with code 1); log: /logs/a.log",
    ]
