import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

TESSERA = Path(sys.executable).with_name("tessera")

RunCli = Callable[..., subprocess.CompletedProcess[str]]
MakeDistribution = Callable[[str, Mapping[str, Mapping[str, str]], Mapping[str, str]], None]


@pytest.fixture
def tessera_command() -> Path:
    """The installed ``tessera`` console script."""
    return TESSERA


@pytest.fixture
def run_cli() -> RunCli:
    """Run the installed ``tessera`` console script and capture its output."""

    def run(
        *args: str, env: Mapping[str, str] | None = None, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(TESSERA), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "COLUMNS": "200", **(env or {})},
            check=False,
        )

    return run


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    """A directory to put on PYTHONPATH, holding distributions the test builds."""
    path = tmp_path / "site"
    path.mkdir()
    return path


@pytest.fixture
def make_distribution(site_dir: Path) -> MakeDistribution:
    """Install a real (if minimal) distribution into ``site_dir``: a dist-info folder and modules.

    Arguments: the distribution name, its entry points ({group: {name: value}}), and its modules
    ({module name: source}).
    """

    def make(
        name: str,
        entry_points: Mapping[str, Mapping[str, str]],
        modules: Mapping[str, str],
    ) -> None:
        dist_info = site_dir / f"{name.replace('-', '_')}-0.1.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n", encoding="utf-8"
        )
        sections = [
            f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in points.items())
            for group, points in entry_points.items()
        ]
        (dist_info / "entry_points.txt").write_text("\n".join(sections), encoding="utf-8")
        for module, source in modules.items():
            (site_dir / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")

    return make
