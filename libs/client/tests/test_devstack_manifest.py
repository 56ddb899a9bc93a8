from pathlib import Path

import pytest

from tessera.client.devstack import (
    MANIFEST_NAME,
    Component,
    ComponentKind,
    StackManifest,
    StackManifestError,
)


def _manifest() -> StackManifest:
    return StackManifest(
        supervisor_pid=123,
        etcd_endpoints=("127.0.0.1:2379",),
        redis_url="redis://127.0.0.1:6379/0",
        components=(
            Component(name="etcd", kind=ComponentKind.ETCD, endpoint="127.0.0.1:2379", pid=7),
            Component(
                name="worker",
                kind=ComponentKind.WORKER,
                endpoint="redis://127.0.0.1:6379/0",
                pid=9,
                log=Path("/tmp/worker.log"),
            ),
        ),
    )


def test_manifest_round_trips_through_stack_json(tmp_path: Path) -> None:
    written = _manifest().write(tmp_path)

    assert written == tmp_path / MANIFEST_NAME
    assert StackManifest.read(tmp_path) == _manifest()
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_manifest_reads_as_none(tmp_path: Path) -> None:
    assert StackManifest.read(tmp_path) is None


def test_remove_deletes_the_manifest_and_tolerates_its_absence(tmp_path: Path) -> None:
    _manifest().write(tmp_path)

    StackManifest.remove(tmp_path)
    StackManifest.remove(tmp_path)

    assert not (tmp_path / MANIFEST_NAME).exists()


def test_garbled_manifest_raises_a_typed_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text('{"supervisor_pid": "many"}', encoding="utf-8")

    with pytest.raises(StackManifestError) as caught:
        StackManifest.read(tmp_path)

    assert str(tmp_path / MANIFEST_NAME) in caught.value.message
