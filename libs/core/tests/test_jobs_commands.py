import subprocess
import sys

import pytest


def _run(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tessera.core.jobs", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["worker", "-Q", "nosuchqueue"], "tessera-worker: no task module for queue(s) nosuch"),
        (["beat", "--loglevel", "LOUD"], "tessera-beat: invalid settings: TESSERA_LOG_LEVEL"),
    ],
)
def test_jobs_command_refuses_to_start_with_a_clear_message(
    arguments: list[str], message: str
) -> None:
    finished = _run(*arguments)
    assert finished.returncode == 2
    assert message in finished.stderr
