from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from tessera.client.lock import LockClient
from tessera.core import FailedPreconditionError, ValidationError
from tessera.proto.lock.v1 import lock_pb2, lock_pb2_grpc
from tessera.testing import RunningService

SESSION = "0000000000000001"


def _ttl(seconds: float) -> lock_pb2.OpenSessionRequest:
    request = lock_pb2.OpenSessionRequest()
    request.ttl.FromNanoseconds(int(seconds * 1e9))
    return request


def _acquire(**fields: Any) -> lock_pb2.AcquireRequest:
    request = lock_pb2.AcquireRequest(
        name=fields.pop("name", "valid"),
        session_id=fields.pop("session_id", SESSION),
        mode=fields.pop("mode", lock_pb2.LOCK_MODE_EXCLUSIVE),
        request_id=fields.pop("request_id", ""),
    )
    if "wait_s" in fields:
        request.wait_timeout.FromNanoseconds(int(fields.pop("wait_s") * 1e9))
    if "lock_delay_s" in fields:
        request.lock_delay.FromNanoseconds(int(fields.pop("lock_delay_s") * 1e9))
    return request


BAD_REQUESTS: list[tuple[str, str, Callable[[], Any], str]] = [
    ("ttl_missing", "OpenSession", lambda: lock_pb2.OpenSessionRequest(), "ttl"),
    ("ttl_zero", "OpenSession", lambda: _ttl(0), "ttl"),
    ("ttl_too_long", "OpenSession", lambda: _ttl(3601), "ttl"),
    ("empty_name", "Acquire", lambda: _acquire(name=""), "name"),
    ("oversized_name", "Acquire", lambda: _acquire(name="x" * 257), "name"),
    ("oversized_utf8_name", "TryAcquire", lambda: _acquire(name="é" * 129), "name"),
    ("unspecified_mode", "Acquire", lambda: _acquire(mode=0), "mode"),
    ("unknown_mode", "TryAcquire", lambda: _acquire(mode=7), "mode"),
    ("empty_session", "Acquire", lambda: _acquire(session_id=""), "session_id"),
    ("negative_wait", "Acquire", lambda: _acquire(wait_s=-1), "wait_timeout"),
    ("wait_too_long", "Acquire", lambda: _acquire(wait_s=3601), "wait_timeout"),
    ("oversized_request_id", "Acquire", lambda: _acquire(request_id="r" * 129), "request_id"),
    ("negative_lock_delay", "Acquire", lambda: _acquire(lock_delay_s=-1), "lock_delay"),
    ("lock_delay_too_long", "TryAcquire", lambda: _acquire(lock_delay_s=61), "lock_delay"),
    (
        "release_token_zero",
        "Release",
        lambda: lock_pb2.ReleaseRequest(name="valid", session_id=SESSION, token=0),
        "token",
    ),
    ("release_empty_name", "Release", lambda: lock_pb2.ReleaseRequest(token=1), "name"),
    ("describe_empty_name", "Describe", lambda: lock_pb2.DescribeRequest(name=""), "name"),
    ("list_oversized_prefix", "List", lambda: lock_pb2.ListRequest(prefix="p" * 257), "prefix"),
    (
        "validate_token_zero",
        "ValidateToken",
        lambda: lock_pb2.ValidateTokenRequest(name="valid", token=0),
        "token",
    ),
    ("close_empty_session", "CloseSession", lambda: lock_pb2.CloseSessionRequest(), "session_id"),
    ("permit_without_permits", "Acquire", lambda: _permit(0), "permits"),
    ("permits_too_many", "TryAcquire", lambda: _permit(1025), "permits"),
    (
        "permits_on_a_lock",
        "Acquire",
        lambda: lock_pb2.AcquireRequest(
            name="v", session_id=SESSION, mode=lock_pb2.LOCK_MODE_EXCLUSIVE, permits=2
        ),
        "permits",
    ),
    ("reentrant_permit", "Acquire", lambda: _permit(2, reentrant=True), "reentrant"),
    ("permit_with_lock_delay", "Acquire", lambda: _permit(2, lock_delay_s=1), "lock_delay"),
    ("campaign_empty_name", "Campaign", lambda: _campaign(name=""), "name"),
    ("campaign_empty_session", "Campaign", lambda: _campaign(session_id=""), "session_id"),
    ("campaign_oversized_value", "Campaign", lambda: _campaign(value=b"v" * 65537), "value"),
    ("campaign_bad_request_id", "Campaign", lambda: _campaign(request_id="r" * 129), "request_id"),
    (
        "proclaim_token_zero",
        "Proclaim",
        lambda: lock_pb2.ProclaimRequest(name="v", session_id=SESSION, token=0),
        "token",
    ),
    (
        "proclaim_oversized_value",
        "Proclaim",
        lambda: lock_pb2.ProclaimRequest(name="v", session_id=SESSION, token=1, value=b"v" * 65537),
        "value",
    ),
    (
        "resign_oversized_name",
        "Resign",
        lambda: lock_pb2.ResignRequest(name="n" * 257, session_id=SESSION, token=1),
        "name",
    ),
    ("leader_empty_name", "Leader", lambda: lock_pb2.LeaderRequest(), "name"),
]


def _permit(permits: int, **fields: Any) -> lock_pb2.AcquireRequest:
    request = _acquire(mode=lock_pb2.LOCK_MODE_PERMIT, **fields)
    request.permits = permits
    request.reentrant = fields.get("reentrant", False)
    return request


def _campaign(**fields: Any) -> lock_pb2.CampaignRequest:
    request = lock_pb2.CampaignRequest(name="valid", session_id=SESSION, value=b"v")
    for key, value in fields.items():
        setattr(request, key, value)
    return request


@pytest.mark.parametrize(
    ("method", "make_request", "field"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
async def test_lock_bad_input_is_invalid_argument_naming_the_field(
    lock_service: RunningService, method: str, make_request: Callable[[], Any], field: str
) -> None:
    stub = lock_pb2_grpc.LockStub(lock_service.channel)
    before = await stub.List(lock_pb2.ListRequest())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(stub, method)(make_request())
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = dict(caught.value.trailing_metadata() or ())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    bad_request = error_details_pb2.BadRequest()
    assert any(detail.Unpack(bad_request) for detail in status.details)
    assert [violation.field for violation in bad_request.field_violations] == [field]
    assert await stub.List(lock_pb2.ListRequest()) == before


async def test_lock_observe_with_a_bad_name_is_invalid_argument(
    lock_service: RunningService,
) -> None:
    stub = lock_pb2_grpc.LockStub(lock_service.channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stub.Observe(lock_pb2.ObserveRequest(name="")):
            pass
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "name" in (caught.value.details() or "")


async def test_lock_sdk_raises_validation_error_with_the_field(lock_client: LockClient) -> None:
    with pytest.raises(ValidationError) as caught:
        await lock_client.open_session(0.5)
    assert [violation.field for violation in caught.value.violations] == ["ttl"]


async def test_lock_releasing_a_lock_one_does_not_hold_is_failed_precondition(
    lock_client: LockClient,
) -> None:
    name = f"not-mine/{uuid.uuid4().hex}"
    intruder = await lock_client.open_session(5)
    try:
        async with lock_client.lock(name, ttl=5) as held:
            with pytest.raises(FailedPreconditionError, match="token"):
                await lock_client.release_grant(name, intruder.id, held.token)
            described = await lock_client.describe(name)
            assert [holder.token for holder in described.holders] == [held.token]
            assert await lock_client.validate_token(name, held.token)
    finally:
        await intruder.close()


async def test_lock_release_is_idempotent(lock_client: LockClient) -> None:
    name = f"twice/{uuid.uuid4().hex}"
    session = await lock_client.open_session(5)
    try:
        held = await lock_client.acquire(name, session, wait=0)
        assert held is not None
        assert await lock_client.release(held) is True
        assert await lock_client.release(held) is False
    finally:
        await session.close()


async def test_lock_acquiring_twice_in_one_session_is_failed_precondition(
    lock_client: LockClient,
) -> None:
    name = f"again/{uuid.uuid4().hex}"
    session = await lock_client.open_session(5)
    try:
        held = await lock_client.acquire(name, session, wait=0)
        assert held is not None
        with pytest.raises(FailedPreconditionError):
            await lock_client.acquire(name, session, mode="shared", wait=0)
        assert [h.token for h in (await lock_client.describe(name)).holders] == [held.token]
    finally:
        await session.close()
