"""The Commands stream: Acquire, TryAcquire and Release as messages on one long-lived stream.

A unary call on grpc.aio costs about twice the latency of one message each way on a stream
that is already open, and a contended hand-off waits for two of them (the holder's Release, the
next holder's grant). The stream answers each command exactly as its unary call would, so
clients may use either.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from tessera.core import ValidationError
from tessera.core.server import error_status
from tessera.proto.lock.v1 import lock_pb2

#: Answers one command that is not a cancel (the servicer's unary logic).
Answer = Callable[[lock_pb2.LockCommand], Awaitable[lock_pb2.LockCommandResult]]

#: The status code of an acquisition cancelled by a `cancel` command.
_CANCELLED: int = grpc.StatusCode.CANCELLED.value[0]


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

    Args:
        commands: The client's messages.
        answer: Runs one acquire, try_acquire or release command; raises what the unary call
            would (mapped to `error` by `error_status`).

    Yields:
        One result per command (cancels excepted), in completion order.

    """
    results: asyncio.Queue[lock_pb2.LockCommandResult | None] = asyncio.Queue()
    running: dict[int, asyncio.Task[None]] = {}

    async def run(command: lock_pb2.LockCommand) -> None:
        try:
            result = await answer(command)
        except asyncio.CancelledError:
            if stopping.is_set():
                raise  # the stream ends: nobody to answer
            result = _failure(command.id, _CANCELLED, "cancelled by a cancel command")
        except Exception as error:  # every failure is answered, as a call's is
            result = lock_pb2.LockCommandResult(
                id=command.id, error=error_status(error, "lock command failed")
            )
        finally:
            del running[command.id]
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
            running[command.id] = asyncio.create_task(run(command))
            return
        results.put_nowait(
            lock_pb2.LockCommandResult(id=command.id, error=error_status(error, "lock command"))
        )

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


def _failure(command_id: int, code: int, message: str) -> lock_pb2.LockCommandResult:
    result = lock_pb2.LockCommandResult(id=command_id)
    result.error.code = code
    result.error.message = message
    return result
