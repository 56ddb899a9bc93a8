"""Checks of request fields; each failure names the field and leaves every state unchanged."""

from __future__ import annotations

from google.protobuf import duration_pb2

from tessera.core import ValidationError
from tessera.core.plugins import LockMode
from tessera.lock._convert import MODES

#: Longest lock name (and List prefix), in UTF-8 bytes.
MAX_NAME_BYTES = 256
#: Longest request id, in UTF-8 bytes.
MAX_REQUEST_ID_BYTES = 128
#: Shortest and longest session TTL, in seconds.
MIN_TTL_S = 1.0
MAX_TTL_S = 3600.0
#: Longest wait of one Acquire, in seconds; also the wait when none is given.
MAX_WAIT_S = 3600.0
#: Longest lock-delay, in seconds.
MAX_LOCK_DELAY_S = 60.0
#: Largest semaphore, in permits.
MAX_PERMITS = 1024
#: Longest value stored with an entry (an election's value), in bytes.
MAX_VALUE_BYTES = 64 * 1024


def lock_name(name: str, field: str = "name") -> str:
    """Return a valid lock name, or raise `ValidationError` naming `field`."""
    if not name:
        raise ValidationError.for_field(field, "must not be empty")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise ValidationError.for_field(field, f"must be at most {MAX_NAME_BYTES} bytes")
    return name


def name_prefix(prefix: str) -> str:
    """Return a valid List prefix (may be empty), or raise `ValidationError`."""
    if len(prefix.encode()) > MAX_NAME_BYTES:
        raise ValidationError.for_field("prefix", f"must be at most {MAX_NAME_BYTES} bytes")
    return prefix


def session_id(value: str) -> str:
    """Return a non-empty session id, or raise `ValidationError`."""
    if not value:
        raise ValidationError.for_field("session_id", "must not be empty")
    return value


def ttl_s(ttl: duration_pb2.Duration, present: bool) -> float:
    """Return a session TTL in seconds, or raise `ValidationError` naming `ttl`."""
    seconds = ttl.ToTimedelta().total_seconds()
    if not present or not MIN_TTL_S <= seconds <= MAX_TTL_S:
        raise ValidationError.for_field(
            "ttl", f"must be between {MIN_TTL_S:g} and {MAX_TTL_S:g} seconds"
        )
    return seconds


def wait_s(wait: duration_pb2.Duration, present: bool) -> float:
    """Return an Acquire wait in seconds (`MAX_WAIT_S` when unset), or raise `ValidationError`."""
    if not present:
        return MAX_WAIT_S
    seconds = wait.ToTimedelta().total_seconds()
    if not 0 <= seconds <= MAX_WAIT_S:
        raise ValidationError.for_field(
            "wait_timeout", f"must be between 0 and {MAX_WAIT_S:g} seconds"
        )
    return seconds


def lock_delay_s(delay: duration_pb2.Duration) -> float:
    """Return a lock-delay in seconds (0 when unset), or raise `ValidationError`."""
    seconds = delay.ToTimedelta().total_seconds()
    if not 0 <= seconds <= MAX_LOCK_DELAY_S:
        raise ValidationError.for_field(
            "lock_delay", f"must be between 0 and {MAX_LOCK_DELAY_S:g} seconds"
        )
    return seconds


def mode(value: int) -> LockMode:
    """Return the lock mode, or raise `ValidationError` naming `mode`."""
    found = MODES.get(value)
    if found is None:
        raise ValidationError.for_field(
            "mode", "must be LOCK_MODE_EXCLUSIVE, LOCK_MODE_SHARED or LOCK_MODE_PERMIT"
        )
    return found


def permits(mode: LockMode, value: int, *, reentrant: bool, lock_delay_s: float) -> int:
    """Return the semaphore size of an acquisition (0 for a lock), or raise `ValidationError`.

    A permit (mode PERMIT) needs 1 to `MAX_PERMITS` permits, no reentrancy and no lock-delay;
    a lock takes no permits.
    """
    if mode is not LockMode.PERMIT:
        if value:
            raise ValidationError.for_field("permits", "must be 0 unless mode is LOCK_MODE_PERMIT")
        return 0
    if not 1 <= value <= MAX_PERMITS:
        raise ValidationError.for_field("permits", f"must be between 1 and {MAX_PERMITS}")
    if reentrant:
        raise ValidationError.for_field("reentrant", "a permit cannot be reentrant")
    if lock_delay_s:
        raise ValidationError.for_field("lock_delay", "a permit takes no lock-delay")
    return value


def value(data: bytes) -> bytes:
    """Return a value to store with an entry, or raise `ValidationError` naming `value`."""
    if len(data) > MAX_VALUE_BYTES:
        raise ValidationError.for_field("value", f"must be at most {MAX_VALUE_BYTES} bytes")
    return data


def request_id(value: str) -> str:
    """Return a request id (may be empty), or raise `ValidationError`."""
    if len(value.encode()) > MAX_REQUEST_ID_BYTES:
        raise ValidationError.for_field(
            "request_id", f"must be at most {MAX_REQUEST_ID_BYTES} bytes"
        )
    return value


def token(value: int) -> int:
    """Return a fencing token (> 0), or raise `ValidationError` naming `token`."""
    if value <= 0:
        raise ValidationError.for_field("token", "must be a token a grant returned (> 0)")
    return value
