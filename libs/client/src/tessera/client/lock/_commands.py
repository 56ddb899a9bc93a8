"""The SDK's side of the lock service's Commands stream."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field

import grpc

from tessera.client._rpc_errors import rpc_error, status_error
from tessera.core import TesseraError, UnavailableError
from tessera.proto.lock.v1 import lock_pb2, lock_pb2_grpc

_Call = grpc.aio.StreamStreamCall[lock_pb2.LockCommand, lock_pb2.LockCommandResult]


@dataclass(slots=True)
class _Stream:
    """One opened Commands call and the commands in flight on it."""

    call: _Call
    pending: dict[int, asyncio.Future[lock_pb2.LockCommandResult]] = field(default_factory=dict)
    # Acquisitions whose caller was cancelled: a grant that still arrives is given back.
    abandoned: dict[int, lock_pb2.AcquireRequest] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None


class CommandStream:
    """One Commands stream that a `LockClient`'s acquisitions and releases share.

    Opened on first use and again after it breaks. Each command gets the next id and a future
    that its result resolves. Writes are serialized (grpc.aio allows one at a time).

    Contract:
    - `run` returns the result of one command, or raises what the unary call would have
      (`status_error` of its `error`).
    - A caller cancelled while its acquisition waits sends a `cancel` for it, so the session
      leaves the queue as on a cancelled Acquire call; should the grant cross the cancel, it is
      released (a unary call cannot do that: its late reply is lost).
    - When the stream breaks (the service restarted, the connection dropped), every command in
      flight on it raises the translated error of the stream, `UnavailableError` for a lost
      connection; acquisitions carry a request id, so retrying them is safe.

    Concurrency: any number of tasks of the event loop the channel belongs to.

    Args:
        stub: The lock service's stub.

    """

    def __init__(self, stub: lock_pb2_grpc.LockAsyncStub) -> None:
        self._stub = stub
        self._stream: _Stream | None = None
        self._ids = itertools.count(1)
        self._write = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    async def run(self, command: lock_pb2.LockCommand) -> lock_pb2.LockCommandResult:
        """Send `command` (its `id` is set here) and return its successful result.

        Raises:
            TesseraError: The command failed (as its unary call would), or the stream broke.
            UnavailableError: The stream broke, or `close` was called.

        """
        if self._closed:
            raise UnavailableError("the lock client is closed")
        stream = self._open()
        command.id = next(self._ids)
        future: asyncio.Future[lock_pb2.LockCommandResult]
        future = asyncio.get_running_loop().create_future()
        stream.pending[command.id] = future
        try:
            async with self._write:
                await stream.call.write(command)
            result = await future
        except asyncio.CancelledError:
            acquisition = _acquisition(command)
            if acquisition is not None and not stream.call.done():
                stream.abandoned[command.id] = acquisition
                self._send(stream, lock_pb2.LockCommand(cancel=command.id))
            raise
        except grpc.aio.AioRpcError as error:
            raise rpc_error(error) from error
        except (grpc.aio.UsageError, asyncio.InvalidStateError) as error:
            # Written after the stream ended (grpc.aio: "RPC already finished").
            raise UnavailableError("the lock command stream closed") from error
        finally:
            stream.pending.pop(command.id, None)
        if result.WhichOneof("result") == "error":
            raise status_error(result.error)
        return result

    async def close(self) -> None:
        """End the stream; commands in flight and later ones raise `UnavailableError`."""
        self._closed = True
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.call.cancel()
            if stream.reader is not None:
                # the reader ends by itself once the call is cancelled; a cancel of the caller
                # must still reach the caller
                await asyncio.wait([stream.reader])
        for task in list(self._background):
            task.cancel()

    def _open(self) -> _Stream:
        stream = self._stream
        if stream is None or stream.call.done():
            stream = self._stream = _Stream(self._stub.Commands())
            stream.reader = asyncio.create_task(self._read(stream), name="lock-commands")
        return stream

    async def _read(self, stream: _Stream) -> None:
        failure: TesseraError = UnavailableError("the lock command stream ended")
        try:
            async for result in stream.call:
                future = stream.pending.get(result.id)
                if future is not None and not future.done():
                    future.set_result(result)
                elif (abandoned := stream.abandoned.pop(result.id, None)) is not None:
                    self._give_back(stream, abandoned, result)
        except grpc.aio.AioRpcError as error:
            failure = rpc_error(error)
        except asyncio.CancelledError:
            failure = UnavailableError("the lock command stream was closed")
        finally:
            if self._stream is stream:
                self._stream = None
            for future in stream.pending.values():
                if not future.done():
                    future.set_exception(failure)

    def _give_back(
        self, stream: _Stream, request: lock_pb2.AcquireRequest, result: lock_pb2.LockCommandResult
    ) -> None:
        """Release a grant that arrived after its caller gave up waiting."""
        if result.WhichOneof("result") == "acquired" and result.acquired.acquired:
            release = lock_pb2.ReleaseRequest(
                name=request.name, session_id=request.session_id, token=result.acquired.token
            )
            self._send(stream, lock_pb2.LockCommand(id=next(self._ids), release=release))

    def _send(self, stream: _Stream, command: lock_pb2.LockCommand) -> None:
        """Write `command` in the background, ignoring its result (cancel, give-back)."""

        async def send() -> None:
            with contextlib.suppress(
                grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError
            ):
                async with self._write:
                    await stream.call.write(command)

        task = asyncio.get_running_loop().create_task(send())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _acquisition(command: lock_pb2.LockCommand) -> lock_pb2.AcquireRequest | None:
    match command.WhichOneof("command"):
        case "acquire":
            return command.acquire
        case "try_acquire":
            return command.try_acquire
    return None
