"""Conversions between the backend's types and the proto messages."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from google.protobuf import duration_pb2, timestamp_pb2

from tessera.core.plugins import LockEntry, LockMode, LockState
from tessera.proto.lock.v1 import lock_pb2

#: Proto lock modes and the backend's.
MODES: Mapping[int, LockMode] = {
    lock_pb2.LOCK_MODE_EXCLUSIVE: LockMode.EXCLUSIVE,
    lock_pb2.LOCK_MODE_SHARED: LockMode.SHARED,
    lock_pb2.LOCK_MODE_PERMIT: LockMode.PERMIT,
}
_PROTO_MODES = {mode: number for number, mode in MODES.items()}


def duration(seconds: float) -> duration_pb2.Duration:
    """Return `seconds` as a protobuf Duration."""
    message = duration_pb2.Duration()
    message.FromTimedelta(timedelta(seconds=seconds))
    return message


def lock_description(state: LockState) -> lock_pb2.LockDescription:
    """Return a lock's state as the proto message, lease expiries as wall-clock times."""
    now = datetime.now(UTC)
    return lock_pb2.LockDescription(
        name=state.name,
        holders=[_entry(entry, now) for entry in state.holders],
        waiters=[_entry(entry, now) for entry in state.waiters],
        permits=state.permits,
    )


def leader(state: LockState) -> lock_pb2.LeaderResponse:
    """Return the leader of an election (the exclusive holder of its lock), if it has one."""
    holder = state.holders[0] if state.holders else None
    if holder is None or holder.mode is not LockMode.EXCLUSIVE:
        return lock_pb2.LeaderResponse()
    message = lock_pb2.Leader(session_id=holder.session_id, token=holder.token, value=holder.value)
    if holder.lease_expires_in_s is not None:
        message.lease_expires_at.CopyFrom(_timestamp(datetime.now(UTC), holder.lease_expires_in_s))
    return lock_pb2.LeaderResponse(leader=message)


def _timestamp(now: datetime, in_s: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(now + timedelta(seconds=in_s))
    return stamp


def _entry(entry: LockEntry, now: datetime) -> lock_pb2.LockEntry:
    message = lock_pb2.LockEntry(
        session_id=entry.session_id,
        mode=_PROTO_MODES[entry.mode],  # type: ignore[arg-type]  # the enum's int values
        token=entry.token,
        queue_position=entry.queue_position,
        holds=entry.holds,
        value=entry.value,
    )
    if entry.lease_expires_in_s is not None:
        message.lease_expires_at.CopyFrom(_timestamp(now, entry.lease_expires_in_s))
    return message
