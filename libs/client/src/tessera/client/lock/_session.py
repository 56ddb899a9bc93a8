from __future__ import annotations

import asyncio
from collections import deque

import grpc
import structlog

from tessera.client._rpc_errors import rpc_error
from tessera.core import TesseraError
from tessera.proto.lock.v1 import lock_pb2, lock_pb2_grpc

# After a broken keep-alive stream, open a new one this often until the session's deadline.
_RECONNECT_INTERVAL_S = 0.2


class Session:
    """A lock session, kept alive in the background until `close`.

    The session's locks are valid only while it lives. The client computes the session's deadline
    from when each keep-alive request was SENT plus the TTL the server granted: the server renewed
    the lease after that instant, so the lease cannot end before the client's deadline. `lost`
    turns true when the deadline passes without a renewal (even if this process was paused and no
    code ran), when the server pushes the loss, or when the stream fails for good; it never turns
    false again. A lost session is not renewed: open a new one.

    Concurrency: use from the event loop that opened it; `lost` and `wait_lost` from any task.

    Attributes:
        id: The session id.
        ttl_s: The TTL the server granted, in seconds.

    """

    def __init__(self, stub: lock_pb2_grpc.LockAsyncStub, session_id: str, ttl_s: float) -> None:
        self.id = session_id
        self.ttl_s = ttl_s
        self._stub = stub
        self._loop = asyncio.get_running_loop()
        self._deadline = self._loop.time() + ttl_s
        self._lost = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    @classmethod
    async def open(cls, stub: lock_pb2_grpc.LockAsyncStub, ttl_s: float) -> Session:
        """Open a session and start keeping it alive.

        Raises:
            ValidationError: `ttl_s` is out of range (1 to 3600 s).
            TesseraError: The call failed.

        """
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        request = lock_pb2.OpenSessionRequest()
        request.ttl.FromNanoseconds(round(ttl_s * 1e9))
        try:
            response = await stub.OpenSession(request)
        except grpc.aio.AioRpcError as error:
            raise rpc_error(error) from error
        session = cls(stub, response.session_id, response.ttl.ToTimedelta().total_seconds())
        session._deadline = sent_at + session.ttl_s
        session._tasks = [
            asyncio.create_task(session._keep_alive(), name=f"lock-session-{session.id}"),
            asyncio.create_task(session._watchdog(), name=f"lock-session-watchdog-{session.id}"),
        ]
        return session

    @property
    def lost(self) -> bool:
        """Whether the session (and every lock it held) must be taken as lost."""
        return self._lost.is_set() or self._loop.time() >= self._deadline

    @property
    def deadline(self) -> float:
        """`loop.time()` at which the session ends unless renewed before."""
        return self._deadline

    async def wait_lost(self) -> None:
        """Return once the session is lost."""
        await self._lost.wait()

    async def close(self) -> None:
        """Stop the keep-alives and end the session on the server, releasing its locks.

        A failed close is logged: the session then ends after its TTL.
        """
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.lost:
            return
        self._declare_lost("closed")
        try:
            await self._stub.CloseSession(lock_pb2.CloseSessionRequest(session_id=self.id))
        except grpc.aio.AioRpcError as error:
            structlog.get_logger(__name__).warning(
                "lock_session_close_failed", session=self.id, error=error.details()
            )

    async def _watchdog(self) -> None:
        # Sleeps until the current deadline, which renewals move; the event cannot express a
        # deadline that moves, and `lost` reads the clock anyway.
        while not self.lost:  # noqa: ASYNC110 -- see above
            await asyncio.sleep(max(self._deadline - self._loop.time(), 0.0))
        self._declare_lost("no renewal before the deadline")

    async def _keep_alive(self) -> None:
        while not self.lost:
            try:
                await self._stream()
            except (grpc.aio.AioRpcError, TesseraError) as error:
                structlog.get_logger(__name__).info(
                    "lock_session_keepalive_broken", session=self.id, error=str(error)
                )
            if not self.lost:
                await asyncio.sleep(_RECONNECT_INTERVAL_S)

    async def _stream(self) -> None:
        call = self._stub.KeepAlive()
        sent: deque[float] = deque()

        async def send() -> None:
            while True:
                sent.append(self._loop.time())
                await call.write(lock_pb2.KeepAliveRequest(session_id=self.id))
                await asyncio.sleep(self.ttl_s / 3)

        sender = asyncio.create_task(send())
        try:
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    return
                assert isinstance(response, lock_pb2.KeepAliveResponse)
                if response.lost:
                    self._declare_lost("the server reported the session gone")
                    return
                sent_at = sent.popleft()
                self._deadline = sent_at + response.ttl.ToTimedelta().total_seconds()
        finally:
            sender.cancel()
            # Waited for without suppressing CancelledError: a cancel of this task that lands
            # here must still end it (Session.close waits for it).
            await asyncio.wait([sender])
            if not sender.cancelled():
                sender.exception()  # retrieved: the stream's own outcome is what counts
            call.cancel()

    def _declare_lost(self, reason: str) -> None:
        if not self._lost.is_set():
            if reason != "closed":
                structlog.get_logger(__name__).warning(
                    "lock_session_lost", session=self.id, reason=reason
                )
            self._lost.set()
