from __future__ import annotations

import pytest

from tessera.client.cli._lock import parse_duration
from tessera.client.lock import FencedResource, StaleTokenError
from tessera.core import FailedPreconditionError, ValidationError


def test_fenced_resource_rejects_tokens_older_than_the_highest_seen() -> None:
    resource = FencedResource()
    resource.admit(5)
    resource.admit(5)  # one holder writes many times
    resource.admit(9)
    with pytest.raises(StaleTokenError) as caught:
        resource.admit(5)
    assert isinstance(caught.value, FailedPreconditionError)
    assert (caught.value.token, caught.value.highest) == (5, 9)
    assert resource.highest == 9


@pytest.mark.parametrize(
    ("text", "seconds"), [("10s", 10.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), ("3", 3.0)]
)
def test_lock_cli_parses_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_lock_cli_rejects_bad_durations() -> None:
    with pytest.raises(ValidationError):
        parse_duration("ten seconds")
