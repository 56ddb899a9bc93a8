"""The Commands stream: Acquire, TryAcquire and Release as messages on one long-lived stream.

A unary call on grpc.aio costs about twice the latency of one message each way on a stream
that is already open, and a contended hand-off waits for two of them (the holder's Release, the
next holder's grant). The stream answers each command exactly as its unary call would, so
clients may use either; and records each one as that call (`StreamedCalls`): in the server's
per-method metrics and as a span named like the call's, so dashboards and traces show every
acquire and release whichever way it was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from tessera.core import ValidationError
from tessera.core.observability import StreamedCall, StreamedCalls
from tessera.core.server import error_status
from tessera.proto.lock.v1 import lock_pb2

#: Answers one command that is not a cancel (the servicer's unary logic).
Answer = Callable[[lock_pb2.LockCommand], Awaitable[lock_pb2.LockCommandResult]]

#: The status code of an acquisition cancelled by a `cancel` command.
_CANCELLED: int = grpc.StatusCode.CANCELLED.value[0]

_SERVICE: str = lock_pb2.DESCRIPTOR.services_by_name["Lock"].full_name
#: The unary method each kind of acquiring command stands for.
_ACQUIRE_METHODS = {"acquire": "Acquire", "try_acquire": "TryAcquire"}
_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


async def serve_commands(
    commands: AsyncIterator[lock_pb2.LockCommand], answer: Answer
) -> AsyncIterator[lock_pb2.LockCommandResult]:
    """Run each command of a stream concurrently and yield its result as it completes.

    Contract:
    - A command runs as soon as it is read, concurrently with the others; its result (or the
      status its unary call would have ended with, as `error`) is yielded once it completes.
    - A command without a command, or with the id of one still running, is answered at once
      with INVALID_ARGUMENT naming the field (`command` or `id`); the stream goes on.
    - `cancel` cancels the running command with that id (its acquisition leaves the queue) and
      answers it with CANCELLED; it gets no result of its own.
    - When the client half-closes, the commands still running complete and are answered, then
      the stream ends. When the stream is cancelled (the client went away), every running
      command is cancelled.
    - Each command but a cancel is recorded as its unary call (`StreamedCalls`), with the
      status code of its answer (CANCELLED for one cancelled by a cancel or by the end of the
      stream); its span carries `tessera.lock.name` and, when it succeeds,
      `tessera.lock.outcome` (`acquired`, `not_acquired`, `released`, `still_held` or
      `already_gone`) and `tessera.lock.token` (the grant's: of every release, of an acquire
      that got one). A message without a command stands for no call and is not recorded.

    Args:
        commands: The client's messages.
        answer: Runs one acquire, try_acquire or release command; raises what the unary call
            would (mapped to `error` by `error_status`).

    Yields:
        One result per command (cancels excepted), in completion order.

    """
    results: asyncio.Queue[lock_pb2.LockCommandResult | None] = asyncio.Queue()
    running: dict[int, asyncio.Task[None]] = {}
    calls = StreamedCalls(_SERVICE)

    async def run(command: lock_pb2.LockCommand, kind: str) -> None:
        # Started in the command's own task, so its backend calls are traced under its span.
        call = _start_call(calls, command, kind)
        try:
            result = await answer(command)
        except asyncio.CancelledError:
            if stopping.is_set():  # the stream ends: nobody to answer
                call.finish(grpc.StatusCode.CANCELLED, "the stream ended")
                raise
            result = _failure(command.id, _CANCELLED, "cancelled by a cancel command")
        except Exception as error:  # every failure is answered, as a call's is
            result = lock_pb2.LockCommandResult(
                id=command.id, error=error_status(error, "lock command failed")
            )
        finally:
            del running[command.id]
        _finish_call(call, result)
        results.put_nowait(result)

    def start(command: lock_pb2.LockCommand) -> None:
        kind = command.WhichOneof("command")
        if kind == "cancel":
            task = running.get(command.cancel)
            if task is not None:
                task.cancel()
            return
        if kind is None:
            error = ValidationError.for_field("command", "set one of acquire, release, ...")
        elif command.id in running:
            error = ValidationError.for_field("id", f"command {command.id} is still running")
        else:
            running[command.id] = asyncio.create_task(run(command, kind))
            return
        result = lock_pb2.LockCommandResult(
            id=command.id, error=error_status(error, "lock command")
        )
        if kind is not None:
            _finish_call(_start_call(calls, command, kind), result)
        results.put_nowait(result)

    async def read() -> None:
        try:
            async for command in commands:
                start(command)
        finally:
            results.put_nowait(None)  # the client half-closed, or the stream broke

    stopping = asyncio.Event()
    reader = asyncio.create_task(read())
    try:
        reading = True
        while reading or running or not results.empty():
            result = await results.get()
            if result is None:
                reading = False
                if reader.done():
                    reader.result()  # a broken stream ends the call with its error
            else:
                yield result
    finally:
        stopping.set()
        reader.cancel()
        tasks = [reader, *running.values()]
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)


def _start_call(calls: StreamedCalls, command: lock_pb2.LockCommand, kind: str) -> StreamedCall:
    if kind == "release":
        release = command.release
        return calls.start(
            "Release", {"tessera.lock.name": release.name, "tessera.lock.token": release.token}
        )
    acquire: lock_pb2.AcquireRequest = getattr(command, kind)
    return calls.start(_ACQUIRE_METHODS[kind], {"tessera.lock.name": acquire.name})


def _finish_call(call: StreamedCall, result: lock_pb2.LockCommandResult) -> None:
    match result.WhichOneof("result"):
        case "acquired":
            grant = result.acquired
            call.finish(
                grpc.StatusCode.OK,
                attributes={"tessera.lock.outcome": "acquired", "tessera.lock.token": grant.token}
                if grant.acquired
                else {"tessera.lock.outcome": "not_acquired"},
            )
        case "released":
            released = result.released
            if released.still_held:
                outcome = "still_held"
            elif released.released:
                outcome = "released"
            else:
                outcome = "already_gone"
            call.finish(grpc.StatusCode.OK, attributes={"tessera.lock.outcome": outcome})
        case _:  # "error"
            error = result.error
            call.finish(_STATUS_CODES.get(error.code, grpc.StatusCode.UNKNOWN), error.message)


def _failure(command_id: int, code: int, message: str) -> lock_pb2.LockCommandResult:
    result = lock_pb2.LockCommandResult(id=command_id)
    result.error.code = code
    result.error.message = message
    return result
