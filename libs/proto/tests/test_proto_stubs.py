"""The committed stubs match proto/, and the check catches a .proto changed without regenerating."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROTOGEN = ROOT / "tools" / "protogen.py"


def run_check(proto_root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PROTOGEN), "--check", "--proto-root", str(proto_root)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_committed_stubs_match_proto_sources() -> None:
    result = run_check(ROOT / "proto")
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_fails_when_a_proto_changes_without_regenerating(tmp_path: Path) -> None:
    changed = tmp_path / "proto"
    shutil.copytree(ROOT / "proto", changed)
    source = changed / "tessera" / "diagnostics" / "v1" / "diagnostics.proto"
    text = source.read_text()
    source.write_text(
        text.replace("message EchoResponse {\n", "message EchoResponse {\n  string note = 2;\n")
    )

    result = run_check(changed)

    assert result.returncode == 1
    assert "regenerated/diagnostics/v1/diagnostics_pb2.pyi" in result.stdout
    assert "note" in result.stdout
    assert "stubs are stale" in result.stderr


def test_generated_modules_live_under_tessera_proto_but_keep_canonical_file_names() -> None:
    from tessera.proto.diagnostics.v1 import diagnostics_pb2

    assert diagnostics_pb2.DESCRIPTOR.name == "tessera/diagnostics/v1/diagnostics.proto"
    assert diagnostics_pb2.DESCRIPTOR.package == "tessera.diagnostics.v1"


def test_check_ignores_bytecode_caches_beside_the_stubs(tmp_path: Path) -> None:
    # Regression: importing the stubs writes __pycache__/*.pyc into the tree the check compares.
    import compileall

    assert compileall.compile_dir(ROOT / "libs" / "proto" / "src", quiet=1)
    result = run_check(ROOT / "proto")
    assert result.returncode == 0, result.stdout + result.stderr
