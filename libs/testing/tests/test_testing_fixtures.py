import itertools
from pathlib import Path

import pytest

from tessera.core.embedded import RedisServer
from tessera.testing import ServerFactory
from tessera.testing.plugin import _require_system_binary


def test_a_missing_system_binary_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)

    with pytest.raises(pytest.skip.Exception, match="no-such-server not found"):
        _require_system_binary("no-such-server")


def test_a_missing_system_binary_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")

    with pytest.raises(pytest.fail.Exception, match="CI installs it"):
        _require_system_binary("no-such-server")


def test_an_installed_system_binary_passes_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")

    _require_system_binary("sh")


def test_server_factory_starts_servers_in_fresh_directories_and_stops_them_all(
    tmp_path: Path,
) -> None:
    numbers = itertools.count()
    factory = ServerFactory(RedisServer, lambda: tmp_path / str(next(numbers)))

    plain, durable = factory(), factory(appendonly=True)

    assert plain.running
    assert durable.running
    assert durable.appendonly
    assert plain.data_dir != durable.data_dir
    factory.close()
    assert not plain.running
    assert not durable.running
