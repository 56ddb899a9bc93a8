"""Leader elections in the SDK: campaign, as a context manager or a decorator, and observe.

`observe` is an async iterator that survives service restarts and dropped streams.
"""

from __future__ import annotations

import asyncio
import functools
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final, ParamSpec, TypeVar

import grpc
import structlog

from tessera.client._rpc_errors import rpc_error, translated
from tessera.client.lock._guarded import run_while_held
from tessera.client.lock._session import Session
from tessera.core import DeadlineExceededError
from tessera.proto.lock.v1 import lock_pb2, lock_pb2_grpc

P = ParamSpec("P")
R = TypeVar("R")

# Reconnection of `observe` after a broken stream: the first retry after this many seconds,
# doubling (with jitter, so that many observers of a restarted service do not come back in
# step) up to the maximum.
_OBSERVE_RETRY_FIRST_S = 0.05
_OBSERVE_RETRY_MAX_S = 2.0
# No leader yielded yet (None is a value: "nobody leads").
_NOTHING: Final = object()


@dataclass(frozen=True, slots=True)
class Leader:
    """The leader of an election as the service sees it.

    Attributes:
        session_id: The leader's session.
        token: Its fencing token (the election lock's token).
        value: The value it proclaimed.

    """

    session_id: str
    token: int
    value: bytes


@dataclass(slots=True)
class Leadership:
    """Leadership of an election by this client, held while its session lives.

    Attributes:
        name: The election.
        token: Fencing token of the leadership: present it to the resources the leader writes.
        value: The value last proclaimed by this client.
        session: The session the leadership lives on.

    """

    name: str
    token: int
    value: bytes
    session: Session
    _stub: lock_pb2_grpc.LockAsyncStub = field(repr=False)

    @property
    def lost(self) -> bool:
        """Whether leadership must be taken as lost (the session may have ended): stop leading."""
        return self.session.lost

    async def wait_lost(self) -> None:
        """Return once leadership is lost (race it against the leader's work)."""
        await self.session.wait_lost()

    async def proclaim(self, value: bytes) -> None:
        """Publish a new value as leader.

        Raises:
            FailedPreconditionError: This client no longer leads.
            ValidationError: `value` is over 64 KiB.
            TesseraError: The call failed.

        """
        request = lock_pb2.ProclaimRequest(
            name=self.name, session_id=self.session.id, token=self.token, value=value
        )
        await translated(self._stub.Proclaim(request))
        self.value = value


class ElectionMethods:
    """The election methods of `LockClient` (mixed into it, which sets `_stub`)."""

    _stub: lock_pb2_grpc.LockAsyncStub

    @asynccontextmanager
    async def campaign(
        self, name: str, value: bytes = b"", *, ttl: float = 10.0, wait: float | None = None
    ) -> AsyncIterator[Leadership]:
        """Lead election `name` for the duration of an `async with` block.

        Opens a session of its own, waits (FIFO among candidates) until elected, and yields the
        `Leadership`; the session is renewed in the background. Check `lost` (or race
        `wait_lost()`) before acting as leader. On exit the client resigns and closes the
        session, so the next candidate is elected.

        Args:
            name: The election.
            value: Published with the candidacy and as the leader's value.
            ttl: Session TTL: how long leadership outlives a leader that stops renewing.
            wait: Seconds to wait for election; None waits up to the server's maximum (1 h).

        Raises:
            DeadlineExceededError: Not elected within `wait`.
            ValidationError: A bad argument, naming the field.
            TesseraError: A call failed.

        """
        session = await Session.open(self._stub, ttl)
        try:
            request = lock_pb2.CampaignRequest(
                name=name, session_id=session.id, value=value, request_id=uuid.uuid4().hex
            )
            if wait is not None:
                request.wait_timeout.FromNanoseconds(round(wait * 1e9))
            response = await translated(self._stub.Campaign(request))
            if not response.elected:
                raise DeadlineExceededError(f"not elected leader of {name!r} within {wait} s")
            leadership = Leadership(name, response.token, value, session, self._stub)
            try:
                yield leadership
            finally:
                if not leadership.lost:
                    resign = lock_pb2.ResignRequest(
                        name=name, session_id=session.id, token=response.token
                    )
                    await translated(self._stub.Resign(resign))
        finally:
            await session.close()

    async def leader(self, name: str) -> Leader | None:
        """Return the leader of election `name`, or None when it has none."""
        response = await translated(self._stub.Leader(lock_pb2.LeaderRequest(name=name)))
        return _leader(response)

    def leading(
        self, name: str, value: bytes = b"", *, ttl: float = 10.0, wait: float | None = None
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Decorate a coroutine function so that every call runs as leader of election `name`.

        Each call campaigns as `campaign` does (same arguments and errors: it waits, FIFO among
        candidates, until elected), runs the function, then resigns. The call is cancelled if
        leadership is lost meanwhile, raising `FailedPreconditionError`. Code that writes to a
        fenced resource or proclaims needs the `Leadership`: use `campaign` instead.

        Example::

            @client.leading("scheduler", b"10.0.0.7:8080", ttl=10)
            async def schedule() -> None: ...

        """

        def decorate(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            @functools.wraps(function)
            async def run_leading(*args: P.args, **kwargs: P.kwargs) -> R:
                async with self.campaign(name, value, ttl=ttl, wait=wait) as leadership:
                    return await run_while_held(
                        function(*args, **kwargs),
                        leadership.wait_lost,
                        f"leadership of {name!r} was lost while {function.__name__} ran",
                    )

            return run_leading

        return decorate

    async def observe(self, name: str) -> AsyncIterator[Leader | None]:
        """Yield the leader of election `name` now, then at every change of leader or value.

        None means no leader. Runs until the caller stops iterating (the stream is then
        cancelled). A stream that breaks (the service restarted, a connection dropped, the
        service ended it) is opened again, after 50 ms doubling up to 2 s between attempts,
        for as long as the caller iterates. After a reconnection the leader is yielded only if
        it differs from the last one yielded: an unchanged leader is not repeated, and changes
        that came and went while the stream was down are not seen.

        Raises:
            ValidationError: A bad name.
            TesseraError: The service refused the stream for a reason a retry cannot fix.

        """
        last: object = _NOTHING
        retry_s = _OBSERVE_RETRY_FIRST_S
        while True:
            call = self._stub.Observe(lock_pb2.ObserveRequest(name=name))
            try:
                async for response in call:
                    retry_s = _OBSERVE_RETRY_FIRST_S
                    current = _leader(response)
                    if current != last:
                        last = current
                        yield current
            except grpc.aio.AioRpcError as error:
                failure = rpc_error(error)
                # CANCELLED here comes from the server (ours would raise CancelledError): a
                # service shutting down cancels its streams.
                if not (failure.retryable or error.code() == grpc.StatusCode.CANCELLED):
                    raise failure from error
                structlog.get_logger(__name__).info(
                    "lock_observe_reconnecting", election=name, error=failure.message
                )
            finally:
                call.cancel()
            await asyncio.sleep(retry_s * random.uniform(0.5, 1.0))
            retry_s = min(retry_s * 2, _OBSERVE_RETRY_MAX_S)


def _leader(response: lock_pb2.LeaderResponse) -> Leader | None:
    if not response.HasField("leader"):
        return None
    found = response.leader
    return Leader(found.session_id, found.token, found.value)
