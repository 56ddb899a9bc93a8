"""The election RPCs: an election is an exclusive lock whose holder leads with a value."""

from __future__ import annotations

from collections.abc import AsyncIterator

from tessera.core import FailedPreconditionError
from tessera.core.plugins import LockBackend, LockMode, ReleaseOutcome
from tessera.core.server import ServicerContext
from tessera.lock import _validation as check
from tessera.lock._convert import leader
from tessera.lock._release import release_grant
from tessera.proto.lock.v1 import lock_pb2


class ElectionRpcs:
    """`Campaign`, `Proclaim`, `Resign`, `Leader` and `Observe` of `tessera.lock.v1.Lock`.

    Built on the backend's lock primitives, so every backend has elections: campaigning is
    `acquire` in exclusive mode with the candidate's value (FIFO among candidates, fenced,
    ended with the session), proclaiming is `proclaim`, resigning is `release`, and observing
    is `observe` reduced to changes of leader or value. Mixed into `LockServicer`, which sets
    `_backend`.
    """

    _backend: LockBackend

    async def Campaign(  # noqa: N802 -- gRPC method names are CamelCase
        self, request: lock_pb2.CampaignRequest, context: ServicerContext
    ) -> lock_pb2.CampaignResponse:
        """Wait to lead the election; see the proto."""
        name = check.lock_name(request.name)
        session = check.session_id(request.session_id)
        value = check.value(request.value)
        wait_s = check.wait_s(request.wait_timeout, request.HasField("wait_timeout"))
        request_id = check.request_id(request.request_id)
        grant = await self._backend.acquire(
            name, session, LockMode.EXCLUSIVE, wait_s=wait_s, request_id=request_id, value=value
        )
        if grant is None:
            return lock_pb2.CampaignResponse(elected=False)
        return lock_pb2.CampaignResponse(elected=True, token=grant.token)

    async def Proclaim(  # noqa: N802 -- gRPC method names are CamelCase
        self, request: lock_pb2.ProclaimRequest, context: ServicerContext
    ) -> lock_pb2.ProclaimResponse:
        """Replace the leader's value; see the proto."""
        name = check.lock_name(request.name)
        session = check.session_id(request.session_id)
        token = check.token(request.token)
        value = check.value(request.value)
        if not await self._backend.proclaim(name, session, token, value):
            raise FailedPreconditionError(
                f"token: session {session!r} does not lead {name!r} with token {token}"
            )
        return lock_pb2.ProclaimResponse()

    async def Resign(  # noqa: N802 -- gRPC method names are CamelCase
        self, request: lock_pb2.ResignRequest, context: ServicerContext
    ) -> lock_pb2.ResignResponse:
        """Give up leadership, idempotently; see the proto."""
        outcome = await release_grant(self._backend, request, "lead")
        return lock_pb2.ResignResponse(resigned=outcome is not ReleaseOutcome.ALREADY_GONE)

    async def Leader(  # noqa: N802 -- gRPC method names are CamelCase
        self, request: lock_pb2.LeaderRequest, context: ServicerContext
    ) -> lock_pb2.LeaderResponse:
        """Return the current leader; see the proto."""
        return leader(await self._backend.describe(check.lock_name(request.name)))

    async def Observe(  # noqa: N802 -- gRPC method names are CamelCase
        self, request: lock_pb2.ObserveRequest, context: ServicerContext
    ) -> AsyncIterator[lock_pb2.LeaderResponse]:
        """Send the leader now and after every change of leader or value; see the proto."""
        name = check.lock_name(request.name)
        sent = False
        last: tuple[str, int, bytes] | None = None
        states = self._backend.observe(name)
        try:
            async for state in states:
                response = leader(state)
                current = (
                    (response.leader.session_id, response.leader.token, response.leader.value)
                    if response.HasField("leader")
                    else None
                )
                # The first state always goes out; later ones only when the leader or its value
                # changed (the backend also reports candidates coming and going).
                if not sent or current != last:
                    yield response
                sent, last = True, current
        finally:
            await states.aclose()
