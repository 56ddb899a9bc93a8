"""The Commands stream on a real lock service over etcd, with raw stubs (what any language sees)."""

from __future__ import annotations

import asyncio
import uuid

import grpc
from google.rpc import error_details_pb2

from tessera.proto.lock.v1 import lock_pb2, lock_pb2_grpc
from tessera.testing import RunningService


async def _session(stub: lock_pb2_grpc.LockAsyncStub) -> str:
    request = lock_pb2.OpenSessionRequest()
    request.ttl.FromSeconds(10)
    return (await stub.OpenSession(request)).session_id


def _acquire(command_id: int, name: str, session_id: str) -> lock_pb2.LockCommand:
    request = lock_pb2.AcquireRequest(
        name=name, session_id=session_id, mode=lock_pb2.LOCK_MODE_EXCLUSIVE
    )
    return lock_pb2.LockCommand(id=command_id, acquire=request)


def _release(command_id: int, name: str, session_id: str, token: int) -> lock_pb2.LockCommand:
    request = lock_pb2.ReleaseRequest(name=name, session_id=session_id, token=token)
    return lock_pb2.LockCommand(id=command_id, release=request)


async def _read(call: grpc.aio.StreamStreamCall) -> lock_pb2.LockCommandResult:  # type: ignore[type-arg]
    async with asyncio.timeout(5):
        result = await call.read()
    assert isinstance(result, lock_pb2.LockCommandResult)
    return result


async def test_lock_commands_hand_over_in_completion_order(lock_service: RunningService) -> None:
    stub = lock_pb2_grpc.LockStub(lock_service.channel)
    name = f"commands/{uuid.uuid4().hex}"
    first, second = await _session(stub), await _session(stub)
    call = stub.Commands()
    await call.write(_acquire(1, name, first))
    held = await _read(call)
    assert held.id == 1
    assert held.acquired.acquired
    assert held.acquired.token > 0
    await call.write(_acquire(2, name, second))
    described = await stub.Describe(lock_pb2.DescribeRequest(name=name))
    assert [w.session_id for w in described.lock.waiters] == [second]

    await call.write(_release(3, name, first, held.acquired.token))
    answers = {result.id: result for result in [await _read(call), await _read(call)]}
    assert answers[3].released.released
    assert answers[2].acquired.acquired
    assert answers[2].acquired.token > held.acquired.token

    # A second Release of the same grant is idempotent, as the call is.
    await call.write(_release(4, name, first, held.acquired.token))
    assert not (await _read(call)).released.released
    await call.done_writing()
    async with asyncio.timeout(5):
        assert await call.read() is grpc.aio.EOF
    assert await call.code() is grpc.StatusCode.OK


async def test_lock_commands_answer_bad_input_with_field_violations_and_go_on(
    lock_service: RunningService,
) -> None:
    stub = lock_pb2_grpc.LockStub(lock_service.channel)
    name = f"commands/{uuid.uuid4().hex}"
    session = await _session(stub)
    call = stub.Commands()
    await call.write(_acquire(1, "", session))
    await call.write(lock_pb2.LockCommand(id=2))
    bad = {result.id: result.error for result in [await _read(call), await _read(call)]}
    for command_id, field in ((1, "name"), (2, "command")):
        assert bad[command_id].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        violations = error_details_pb2.BadRequest()
        assert any(d.Unpack(violations) for d in bad[command_id].details)
        assert [v.field for v in violations.field_violations] == [field]

    # Releasing another session's grant: FAILED_PRECONDITION, nothing released.
    await call.write(_acquire(3, name, session))
    token = (await _read(call)).acquired.token
    await call.write(_release(4, name, await _session(stub), token))
    assert (await _read(call)).error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    described = await stub.Describe(lock_pb2.DescribeRequest(name=name))
    assert [(h.session_id, h.token) for h in described.lock.holders] == [(session, token)]
    call.cancel()


async def test_lock_commands_refuse_an_id_in_flight(lock_service: RunningService) -> None:
    stub = lock_pb2_grpc.LockStub(lock_service.channel)
    name = f"commands/{uuid.uuid4().hex}"
    holder, waiter, other = await _session(stub), await _session(stub), await _session(stub)
    await stub.Acquire(_acquire(0, name, holder).acquire)
    call = stub.Commands()
    await call.write(_acquire(7, name, waiter))
    await call.write(_acquire(7, name, other))
    refused = await _read(call)
    assert refused.id == 7
    assert refused.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "still running" in refused.error.message
    described = await stub.Describe(lock_pb2.DescribeRequest(name=name))
    assert [w.session_id for w in described.lock.waiters] == [waiter]
    call.cancel()


async def test_lock_commands_cancel_leaves_the_queue(lock_service: RunningService) -> None:
    stub = lock_pb2_grpc.LockStub(lock_service.channel)
    call, name, _, waiter = await _waiting_on_a_stream(stub)
    await call.write(lock_pb2.LockCommand(id=2, cancel=1))
    cancelled = await _read(call)
    assert cancelled.id == 1
    assert cancelled.error.code == grpc.StatusCode.CANCELLED.value[0]
    await _until_waiters(stub, name, 0)

    # The stream goes on serving, and a wait ends by its timeout as the call's does.
    request = _acquire(3, name, waiter)
    request.acquire.wait_timeout.FromMilliseconds(100)
    await call.write(request)
    assert (await _read(call)).acquired == lock_pb2.AcquireResponse(acquired=False)
    call.cancel()


async def test_lock_commands_stream_ending_abandons_its_waits(
    lock_service: RunningService,
) -> None:
    stub = lock_pb2_grpc.LockStub(lock_service.channel)
    call, name, holder, _ = await _waiting_on_a_stream(stub)
    call.cancel()
    await _until_waiters(stub, name, 0)
    described = await stub.Describe(lock_pb2.DescribeRequest(name=name))
    assert [h.session_id for h in described.lock.holders] == [holder]


async def _waiting_on_a_stream(
    stub: lock_pb2_grpc.LockAsyncStub,
) -> tuple[grpc.aio.StreamStreamCall, str, str, str]:  # type: ignore[type-arg]
    """A new lock held by one session and awaited by another through command 1 of a stream.

    Returns:
        The stream, the lock's name, the holder's session and the waiter's.

    """
    name = f"commands/{uuid.uuid4().hex}"
    holder, waiter = await _session(stub), await _session(stub)
    await stub.Acquire(_acquire(0, name, holder).acquire)
    call = stub.Commands()
    await call.write(_acquire(1, name, waiter))
    await _until_waiters(stub, name, 1)
    return call, name, holder, waiter


async def _until_waiters(stub: lock_pb2_grpc.LockAsyncStub, name: str, count: int) -> None:
    async with asyncio.timeout(5):
        while True:
            described = await stub.Describe(lock_pb2.DescribeRequest(name=name))
            if len(described.lock.waiters) == count:
                return
            await asyncio.sleep(0.02)
