"""Prove every benchmark script runs and keeps the JSON contract; says nothing about speed.

Usage: ``python bench/smoke.py [--timeout S]``

Runs each script under bench/ (every ``*.py`` except this one, harness.py and private
``_*.py`` modules) as ``python bench/<name>.py --smoke --json`` and checks that it exits 0
and prints at least one line, each a JSON record with the required keys (see harness.py).
Exits 1 if any script fails, printing why.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from harness import RecordError, validate_record

BENCH_DIR = Path(__file__).resolve().parent
_NOT_BENCHMARKS = frozenset({"smoke.py", "harness.py"})


def benchmark_scripts(bench_dir: Path = BENCH_DIR) -> list[Path]:
    """Return the benchmark scripts in bench_dir, sorted by name."""
    return sorted(
        path
        for path in bench_dir.glob("*.py")
        if path.name not in _NOT_BENCHMARKS and not path.name.startswith("_")
    )


def check_output(stdout: str) -> list[str]:
    """Check a script's stdout; return the case names it reported.

    Raises:
        RecordError: no line at all, or a line that breaks the contract.

    """
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise RecordError("printed no JSON line")
    return [validate_record(line)["case"] for line in lines]


def smoke(script: Path, timeout_s: float) -> tuple[bool, str]:
    """Run one script in smoke mode; return whether it passed and what it reported or why not."""
    try:
        completed = subprocess.run(
            [sys.executable, str(script), "--smoke", "--json"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            cwd=BENCH_DIR.parent,
        )
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout_s:g} s"
    if completed.returncode != 0:
        return False, f"exit status {completed.returncode}\n{completed.stderr[-4000:]}"
    try:
        cases = check_output(completed.stdout)
    except RecordError as error:
        return False, str(error)
    return True, ", ".join(cases)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="seconds each script may take (default %(default)s)",
    )
    args = parser.parse_args()
    scripts = benchmark_scripts()
    if not scripts:
        print(f"FAIL no benchmark script in {BENCH_DIR}")
        return 1
    failed = 0
    for script in scripts:
        started = time.monotonic()
        passed, detail = smoke(script, args.timeout)
        failed += not passed
        status = "ok  " if passed else "FAIL"
        print(f"{status} {script.name} ({time.monotonic() - started:.1f} s): {detail}", flush=True)
    # Worded unlike a test runner's summary: this checks scripts, it runs no test.
    print(f"bench smoke: {len(scripts) - failed} of {len(scripts)} scripts ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
