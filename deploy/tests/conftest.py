"""Offline checks of deploy/: what the files say is checked against the installed code.

No Docker engine or Kubernetes cluster runs here, so these tests read the files and compare them
with the real thing: console scripts and modules of the installed distributions, the settings
classes of each process (found through the installed entry points, never a hard-coded list), the
CLI's command tree, the rate-limit configuration loader, Envoy's protos and published JSON schemas.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs

from tessera.client.cli import app as cli_app
from tessera.core import ENV_PREFIX, TesseraError, TesseraSettings
from tessera.core.jobs import installed_queues

DEPLOY = Path(__file__).resolve().parents[1]
REPO = DEPLOY.parent


def load_yaml(path: Path) -> Any:
    """Parse one YAML document; anchors and merge keys resolved, as Compose and kubectl do."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@cache
def console_scripts() -> Mapping[str, EntryPoint]:
    """Every installed console script by name."""
    return {point.name: point for point in entry_points(group="console_scripts")}


def _package_of(point: EntryPoint) -> str:
    module = point.module
    return module.removesuffix(".__main__")


@cache
def settings_class_of(package: str) -> type[TesseraSettings]:
    """The most derived `TesseraSettings` subclass a process package exports.

    `tessera.registry` exports `RegistrySettings`, `tessera.core.jobs` exports `WorkerSettings`;
    a package that exports none (the CLI, a stdlib module) reads the shared base.
    """
    module = importlib.import_module(package)
    found = [
        value
        for value in vars(module).values()
        if inspect.isclass(value) and issubclass(value, TesseraSettings)
    ]
    leaves = [cls for cls in found if not any(o is not cls and issubclass(o, cls) for o in found)]
    assert len(leaves) <= 1, f"{package} exports several settings classes: {leaves}"
    return leaves[0] if leaves else TesseraSettings


@dataclass(frozen=True, slots=True)
class Process:
    """What one container command runs, as far as the installed code can tell."""

    argv: tuple[str, ...]
    settings_class: type[TesseraSettings]
    problems: tuple[str, ...]


def inspect_command(argv: Sequence[str]) -> Process:
    """Check that `argv` runs something real and find the settings class that process reads.

    Accepted: an installed console script (for `tessera`, the subcommands must exist in the CLI's
    command tree; for `tessera-worker`, each `--queues` entry must be an installed queue),
    `python -m <importable module>` and `python -c <code that compiles>`.
    """
    argv = tuple(argv)
    problems: list[str] = []
    settings: type[TesseraSettings] = TesseraSettings
    program, args = argv[0], list(argv[1:])
    if program in ("python", "python3"):
        if args[:1] == ["-m"] and len(args) > 1:
            if importlib.util.find_spec(args[1]) is None:
                problems.append(f"{argv}: no module {args[1]}")
            elif args[1].startswith("tessera."):
                settings = settings_class_of(args[1].removesuffix(".__main__"))
        elif args[:1] == ["-c"] and len(args) > 1:
            try:
                compile(args[1], "<command>", "exec")
            except SyntaxError as error:
                problems.append(f"{argv}: {error}")
        else:
            problems.append(f"{argv}: python runs neither -m MODULE nor -c CODE")
    elif program in console_scripts():
        point = console_scripts()[program]
        try:
            point.load()
        except ImportError as error:
            problems.append(f"{argv}: console script {program} does not load: {error}")
        settings = settings_class_of(_package_of(point))
        if program == "tessera":
            problems += _cli_problems(argv)
        if program == "tessera-worker":
            problems += _queue_problems(argv)
    else:
        problems.append(f"{argv}: {program} is no installed console script")
    return Process(argv, settings, tuple(problems))


def _cli_problems(argv: Sequence[str]) -> list[str]:
    command: Any = typer.main.get_command(cli_app)
    for word in argv[1:]:
        if word.startswith("-"):
            break
        commands = getattr(command, "commands", None)
        if commands is None:
            break  # a leaf command: the rest are its arguments
        if word not in commands:
            return [f"{argv}: `tessera` has no command {word!r}"]
        command = commands[word]
    if getattr(command, "commands", None) is not None:
        return [f"{argv}: names a command group, not a command"]
    return []


def _queue_problems(argv: Sequence[str]) -> list[str]:
    args = list(argv)
    for flag in ("-Q", "--queues"):
        if flag in args:
            wanted = set(args[args.index(flag) + 1].split(","))
            unknown = wanted - set(installed_queues())
            if unknown:
                return [f"{argv}: queues {sorted(unknown)} are not installed"]
    return []


@contextmanager
def process_environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Make `variables` the only TESSERA_* variables of this process for the block."""
    with pytest.MonkeyPatch.context() as patch:
        for name in os.environ:
            if name.upper().startswith(ENV_PREFIX):
                patch.delenv(name)
        for name, value in variables.items():
            patch.setenv(name, value)
        yield


def settings_problems(
    settings_class: type[TesseraSettings], variables: Mapping[str, str]
) -> tuple[TesseraSettings | None, list[str]]:
    """Read `variables` as the process would; report variables that are no field, or bad values.

    Returns:
        The settings the process would run with (None when they are invalid) and the problems.

    """
    problems = [
        f"{name} is not a field of {settings_class.__name__}"
        for name in variables
        if name.upper().startswith(ENV_PREFIX)
        and name[len(ENV_PREFIX) :].lower() not in settings_class.model_fields
    ]
    tessera_variables = {k: v for k, v in variables.items() if k.upper().startswith(ENV_PREFIX)}
    with process_environment(tessera_variables):
        try:
            return settings_class.from_env(), problems
        except TesseraError as error:
            return None, [*problems, str(error)]


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    """deploy/docker-compose.yml, parsed."""
    document: dict[str, Any] = load_yaml(DEPLOY / "docker-compose.yml")
    return document


@pytest.fixture(scope="session")
def envoy_config() -> dict[str, Any]:
    """deploy/envoy.yaml, parsed."""
    document: dict[str, Any] = load_yaml(DEPLOY / "envoy.yaml")
    return document


class DeployKit:
    """The helpers above, for test modules (conftest is not importable under importlib mode)."""

    deploy = DEPLOY
    repo = REPO
    load_yaml = staticmethod(load_yaml)
    inspect_command = staticmethod(inspect_command)
    settings_problems = staticmethod(settings_problems)
    settings_class_of = staticmethod(settings_class_of)


@pytest.fixture(scope="session")
def kit() -> type[DeployKit]:
    """The deploy-check helpers."""
    return DeployKit
