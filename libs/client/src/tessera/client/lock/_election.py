"""Leader elections in the SDK: campaign as a context manager, observe as an async iterator."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import grpc

from tessera.client._rpc_errors import rpc_error, translated
from tessera.client.lock._session import Session
from tessera.core import DeadlineExceededError
from tessera.proto.lock.v1 import lock_pb2, lock_pb2_grpc


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

    async def observe(self, name: str) -> AsyncIterator[Leader | None]:
        """Yield the leader of election `name` now, then at every change of leader or value.

        None means no leader. Runs until the caller stops iterating (the stream is then
        cancelled).

        Raises:
            ValidationError: A bad name.
            TesseraError: The stream failed; observe again.

        """
        call = self._stub.Observe(lock_pb2.ObserveRequest(name=name))
        try:
            async for response in call:
                yield _leader(response)
        except grpc.aio.AioRpcError as error:
            raise rpc_error(error) from error
        finally:
            call.cancel()


def _leader(response: lock_pb2.LeaderResponse) -> Leader | None:
    if not response.HasField("leader"):
        return None
    found = response.leader
    return Leader(found.session_id, found.token, found.value)
