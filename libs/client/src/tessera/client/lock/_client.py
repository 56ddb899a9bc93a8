from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal, ParamSpec, Self, TypeVar

import grpc

from tessera.client._channel import ChannelClient
from tessera.client._rpc_errors import translated
from tessera.client.lock._commands import CommandStream
from tessera.client.lock._election import ElectionMethods
from tessera.client.lock._guarded import run_while_held
from tessera.client.lock._session import Session
from tessera.core import DeadlineExceededError, UnavailableError
from tessera.proto.lock.v1 import lock_pb2, lock_pb2_grpc

P = ParamSpec("P")
R = TypeVar("R")
Req = TypeVar("Req")
Resp = TypeVar("Resp")

#: A lock mode, as the SDK spells it ("permit": one permit of a semaphore, see `semaphore`).
Mode = Literal["exclusive", "shared", "permit"]
_MODES: dict[str, lock_pb2.LockMode.ValueType] = {
    "exclusive": lock_pb2.LOCK_MODE_EXCLUSIVE,
    "shared": lock_pb2.LOCK_MODE_SHARED,
    "permit": lock_pb2.LOCK_MODE_PERMIT,
}
# Acquire is retried this many times after UNAVAILABLE; the request id makes retries safe.
_ACQUIRE_TRIES = 3


@dataclass(frozen=True, slots=True)
class HeldLock:
    """A lock this client holds.

    Attributes:
        name: The lock.
        token: The grant's fencing token; present it with every write to the guarded resource.
        mode: "exclusive", "shared", or "permit" for a semaphore's permit.
        session: The session holding it; the lock lives only as long as the session.
        holds: How many times the session held the grant when this acquisition returned (more
            than 1 after reentrant acquisitions; each release gives one back).

    """

    name: str
    token: int
    mode: Mode
    session: Session
    holds: int = 1

    @property
    def lost(self) -> bool:
        """Whether the lock must be taken as lost: stop acting on the guarded resource."""
        return self.session.lost

    async def wait_lost(self) -> None:
        """Return once the lock is lost (race it against the work the lock guards)."""
        await self.session.wait_lost()


class LockClient(ElectionMethods, ChannelClient):
    """Async client of the lock service: locks, semaphores and (from `ElectionMethods`) elections.

    Concurrency: one client serves any number of tasks of the event loop it was created in.

    Args:
        channel: A grpc.aio channel to the lock service; closed by `close` only if `owns_channel`.
        owns_channel: Whether `close` closes the channel.

    Example::

        async with LockClient.connect("127.0.0.1:50052") as client:
            async with client.lock("orders", ttl=10) as held:
                resource.write(data, fencing_token=held.token)

    """

    def __init__(self, channel: grpc.aio.Channel, *, owns_channel: bool = False) -> None:
        super().__init__(channel, owns_channel=owns_channel)
        self._stub = lock_pb2_grpc.LockStub(channel)
        self._commands = CommandStream(self._stub)

    @classmethod
    def connect(cls, target: str) -> Self:
        """Return a client on a new plain-text channel to `target` (`host:port`)."""
        return cls(grpc.aio.insecure_channel(target), owns_channel=True)

    async def open_session(self, ttl: float = 10.0) -> Session:
        """Open a session of `ttl` seconds, kept alive until `Session.close`.

        Raises:
            ValidationError: `ttl` is out of range (1 to 3600 s).
            TesseraError: The call failed.

        """
        return await Session.open(self._stub, ttl)

    async def close(self) -> None:
        """End the command stream, then close the channel if this client opened it."""
        await self._commands.close()
        await super().close()

    @asynccontextmanager
    async def lock(
        self,
        name: str,
        *,
        ttl: float = 10.0,
        mode: Mode = "exclusive",
        wait: float | None = None,
        lock_delay: float = 0.0,
    ) -> AsyncIterator[HeldLock]:
        """Hold a lock for the duration of an `async with` block, on a session of its own.

        The session is renewed automatically; check `held.lost` (or race `held.wait_lost()`)
        before acting, and present `held.token` to the resource. On exit the lock is released
        and the session closed.

        Args:
            name: The lock.
            ttl: Session TTL in seconds: how long the lock outlives a holder that stops renewing.
            mode: "exclusive" or "shared".
            wait: Seconds to wait for the lock; None waits up to the server's maximum (1 h).
            lock_delay: Seconds (0 to 60) the lock stays ungranted if this holder's session
                expires instead of releasing: time for a paused holder to notice and stop.

        Raises:
            DeadlineExceededError: The lock was not granted within `wait`.
            ValidationError: A bad argument, naming the field.
            TesseraError: A call failed.

        """
        session = await self.open_session(ttl)
        try:
            held = await self.acquire(name, session, mode=mode, wait=wait, lock_delay=lock_delay)
            if held is None:
                raise DeadlineExceededError(f"lock {name!r} was not granted within {wait} s")
            try:
                yield held
            finally:
                if not held.lost:
                    await self.release(held)
        finally:
            await session.close()

    @asynccontextmanager
    async def semaphore(
        self, name: str, *, permits: int, ttl: float = 10.0, wait: float | None = None
    ) -> AsyncIterator[HeldLock]:
        """Hold one of the `permits` permits of semaphore `name` for an `async with` block.

        Like `lock`: a session of its own, renewed in the background; FIFO among waiters;
        `held.token` fences the permit and `held.lost` says when it may be gone. On exit the
        permit is given back and the session closed. Every user of one semaphore must give the
        same `permits`.

        Raises:
            DeadlineExceededError: No permit was granted within `wait`.
            FailedPreconditionError: The name is a lock, or a semaphore of another size.
            ValidationError: A bad argument (`permits` outside 1-1024), naming the field.
            TesseraError: A call failed.

        """
        session = await self.open_session(ttl)
        try:
            held = await self.acquire_permit(name, session, permits=permits, wait=wait)
            if held is None:
                raise DeadlineExceededError(f"no permit of {name!r} was granted within {wait} s")
            try:
                yield held
            finally:
                if not held.lost:
                    await self.release(held)
        finally:
            await session.close()

    async def acquire_permit(
        self, name: str, session: Session, *, permits: int, wait: float | None = None
    ) -> HeldLock | None:
        """Wait (FIFO) until `session` holds one permit of semaphore `name` of `permits`.

        Returns:
            The permit (`mode` "permit"; give it back with `release`), or None when none was
            granted within `wait` seconds (0: only if one is free now).

        Raises:
            As `semaphore`; NotFoundError when the session is gone.

        """
        request = self._acquire_request(name, session, "permit", 0.0)
        request.permits = permits
        if wait is not None:
            request.wait_timeout.FromNanoseconds(round(wait * 1e9))
        return await self._grant("acquire", request, session, "permit")

    def locked(
        self,
        name: str,
        *,
        ttl: float = 10.0,
        mode: Mode = "exclusive",
        wait: float | None = None,
        lock_delay: float = 0.0,
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Decorate a coroutine function so that every call runs holding the lock `name`.

        Each call takes the lock as `lock` does (same arguments and errors) and releases it when
        the call returns or raises. The call is cancelled if the lock is lost meanwhile, raising
        `FailedPreconditionError`. Code that writes to a fenced resource needs the token: use
        `lock` instead.

        Example::

            @client.locked("jobs/nightly", ttl=30)
            async def nightly() -> None: ...

        """

        def decorate(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            @functools.wraps(function)
            async def run_locked(*args: P.args, **kwargs: P.kwargs) -> R:
                async with self.lock(
                    name, ttl=ttl, mode=mode, wait=wait, lock_delay=lock_delay
                ) as held:
                    return await run_while_held(
                        function(*args, **kwargs),
                        held.wait_lost,
                        f"lock {name!r} was lost while {function.__name__} ran",
                    )

            return run_locked

        return decorate

    def with_permit(
        self, name: str, *, permits: int, ttl: float = 10.0, wait: float | None = None
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Decorate a coroutine function so that every call runs holding a permit of `name`.

        Each call takes one of the `permits` permits as `semaphore` does (same arguments and
        errors) and gives it back when the call returns or raises, so at most `permits` calls
        run at once across every process using the semaphore. The call is cancelled if the
        permit is lost meanwhile, raising `FailedPreconditionError`; cancelling the call gives
        the permit back.

        Example::

            @client.with_permit("pool/db", permits=4, ttl=30)
            async def query() -> None: ...

        """

        def decorate(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            @functools.wraps(function)
            async def run_with_permit(*args: P.args, **kwargs: P.kwargs) -> R:
                async with self.semaphore(name, permits=permits, ttl=ttl, wait=wait) as held:
                    return await run_while_held(
                        function(*args, **kwargs),
                        held.wait_lost,
                        f"the permit of {name!r} was lost while {function.__name__} ran",
                    )

            return run_with_permit

        return decorate

    async def acquire(
        self,
        name: str,
        session: Session,
        *,
        mode: Mode = "exclusive",
        wait: float | None = None,
        lock_delay: float = 0.0,
        reentrant: bool = False,
    ) -> HeldLock | None:
        """Wait (FIFO) until `session` holds the lock.

        `lock_delay` (0 to 60 s) keeps the lock ungranted that long after `session` expires
        while holding it (see `lock`). With `reentrant`, acquiring a lock `session` already
        holds in `mode` adds a hold to the grant (same token, `holds` one more); each `release`
        gives one back and the last one releases the lock.

        Returns:
            The held lock, or None when it was not granted within `wait` seconds.

        Raises:
            ValidationError: A bad argument, naming the field.
            NotFoundError: The session is gone.
            FailedPreconditionError: The session already holds or waits for this lock.
            TesseraError: The call failed.

        """
        request = self._acquire_request(name, session, mode, lock_delay)
        request.reentrant = reentrant
        if wait is not None:
            request.wait_timeout.FromNanoseconds(round(wait * 1e9))
        return await self._grant("acquire", request, session, mode)

    async def try_acquire(
        self, name: str, session: Session, *, mode: Mode = "exclusive", lock_delay: float = 0.0
    ) -> HeldLock | None:
        """Take the lock only if it is free now; None otherwise. Raises as `acquire`."""
        request = self._acquire_request(name, session, mode, lock_delay)
        return await self._grant("try_acquire", request, session, mode)

    async def release(self, held: HeldLock) -> bool:
        """Release a held lock; see `release_grant`."""
        return await self.release_grant(held.name, held.session.id, held.token)

    async def release_grant(self, name: str, session_id: str, token: int) -> bool:
        """Release the grant `token` of session `session_id` on lock `name`.

        Returns:
            True if this call released it (or one of its reentrant holds); False if it was
            already gone (expired or released).

        Raises:
            FailedPreconditionError: The token is not this session's grant.
            TesseraError: The call failed.

        """
        request = lock_pb2.ReleaseRequest(name=name, session_id=session_id, token=token)
        result = await self._commands.run(lock_pb2.LockCommand(release=request))
        return result.released.released

    async def describe(self, name: str) -> lock_pb2.LockDescription:
        """Return the holders and waiters of a lock. Raises `TesseraError` on failure."""
        response = await self._call(self._stub.Describe, lock_pb2.DescribeRequest(name=name))
        return response.lock

    async def list(self, prefix: str = "") -> list[lock_pb2.LockDescription]:
        """Describe every held or awaited lock whose name starts with `prefix`."""
        response = await self._call(self._stub.List, lock_pb2.ListRequest(prefix=prefix))
        return list(response.locks)

    async def validate_token(self, name: str, token: int) -> bool:
        """Whether `token` is a current grant of the lock (for resources that cannot compare)."""
        request = lock_pb2.ValidateTokenRequest(name=name, token=token)
        return (await self._call(self._stub.ValidateToken, request)).valid

    @staticmethod
    def _acquire_request(
        name: str, session: Session, mode: Mode, lock_delay: float
    ) -> lock_pb2.AcquireRequest:
        request = lock_pb2.AcquireRequest(
            name=name,
            session_id=session.id,
            mode=_MODES.get(mode, lock_pb2.LOCK_MODE_UNSPECIFIED),
            request_id=uuid.uuid4().hex,
        )
        request.lock_delay.FromNanoseconds(round(lock_delay * 1e9))
        return request

    async def _grant(
        self,
        kind: Literal["acquire", "try_acquire"],
        request: lock_pb2.AcquireRequest,
        session: Session,
        mode: Mode,
    ) -> HeldLock | None:
        # Over the Commands stream: a contended hand-off waits for this answer and the holder's
        # release, each about half a unary call's latency on the stream.
        command = lock_pb2.LockCommand()
        getattr(command, kind).CopyFrom(request)
        for attempt in range(1, _ACQUIRE_TRIES + 1):
            try:
                response = (await self._commands.run(command)).acquired
                break
            except UnavailableError:
                # The same request id makes the retry return the grant the lost answer carried.
                if attempt == _ACQUIRE_TRIES:
                    raise
        if not response.acquired:
            return None
        return HeldLock(request.name, response.token, mode, session, max(response.holds, 1))

    @staticmethod
    async def _call(method: Callable[[Req], Awaitable[Resp]], request: Req) -> Resp:
        return await translated(method(request))
