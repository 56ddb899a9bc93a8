from __future__ import annotations

from collections.abc import AsyncIterator

from tessera.core.plugins import LockBackend, ReleaseOutcome
from tessera.core.server import ServicerContext
from tessera.lock import _validation as check
from tessera.lock._commands import serve_commands
from tessera.lock._convert import duration, lock_description
from tessera.lock._elections import ElectionRpcs
from tessera.lock._keepalive import keep_alive_stream
from tessera.lock._release import release_grant
from tessera.proto.lock.v1 import lock_pb2, lock_pb2_grpc


class LockServicer(ElectionRpcs, lock_pb2_grpc.LockServicer):
    """The `tessera.lock.v1.Lock` service over one `LockBackend`.

    Locks, semaphores (mode PERMIT) and sessions are served here, elections by `ElectionRpcs`.

    Validates every request (bad input raises `ValidationError` naming the field before any
    state changes) and delegates to the backend, which holds all state: any number of replicas
    can serve the same backend.

    Args:
        backend: Stores sessions and locks.

    """

    def __init__(self, backend: LockBackend) -> None:
        self._backend = backend

    async def OpenSession(  # noqa: N802 -- gRPC method names are CamelCase
        self, request: lock_pb2.OpenSessionRequest, context: ServicerContext
    ) -> lock_pb2.OpenSessionResponse:
        """Start a session; see the proto."""
        ttl_s = check.ttl_s(request.ttl, request.HasField("ttl"))
        session = await self._backend.open_session(ttl_s)
        return lock_pb2.OpenSessionResponse(session_id=session.id, ttl=duration(session.ttl_s))

    async def KeepAlive(  # noqa: N802 -- gRPC method names are CamelCase
        self,
        request_iterator: AsyncIterator[lock_pb2.KeepAliveRequest],
        context: ServicerContext,
    ) -> AsyncIterator[lock_pb2.KeepAliveResponse]:
        """Renew a session per request and push its loss; see the proto."""
        async for response in keep_alive_stream(self._backend, request_iterator):
            yield response

    async def CloseSession(  # noqa: N802 -- gRPC method names are CamelCase
        self, request: lock_pb2.CloseSessionRequest, context: ServicerContext
    ) -> lock_pb2.CloseSessionResponse:
        """End a session and release its locks; see the proto."""
        await self._backend.close_session(check.session_id(request.session_id))
        return lock_pb2.CloseSessionResponse()

    async def Acquire(  # noqa: N802 -- gRPC method names are CamelCase
        self, request: lock_pb2.AcquireRequest, context: ServicerContext
    ) -> lock_pb2.AcquireResponse:
        """Wait in FIFO order for the lock; see the proto."""
        wait_s = check.wait_s(request.wait_timeout, request.HasField("wait_timeout"))
        return await self._acquire(request, wait_s)

    async def TryAcquire(  # noqa: N802 -- gRPC method names are CamelCase
        self, request: lock_pb2.AcquireRequest, context: ServicerContext
    ) -> lock_pb2.AcquireResponse:
        """Take the lock only if it is free now; see the proto."""
        return await self._acquire(request, 0.0)

    async def Release(  # noqa: N802 -- gRPC method names are CamelCase
        self, request: lock_pb2.ReleaseRequest, context: ServicerContext
    ) -> lock_pb2.ReleaseResponse:
        """Release a grant (one hold of it), idempotently for the last one; see the proto."""
        return await self._release(request)

    async def Commands(  # noqa: N802 -- gRPC method names are CamelCase
        self,
        request_iterator: AsyncIterator[lock_pb2.LockCommand],
        context: ServicerContext,
    ) -> AsyncIterator[lock_pb2.LockCommandResult]:
        """Run Acquire, TryAcquire and Release commands from one stream; see the proto."""
        async for result in serve_commands(request_iterator, self._command):
            yield result

    async def Describe(  # noqa: N802 -- gRPC method names are CamelCase
        self, request: lock_pb2.DescribeRequest, context: ServicerContext
    ) -> lock_pb2.DescribeResponse:
        """Describe one lock; see the proto."""
        state = await self._backend.describe(check.lock_name(request.name))
        return lock_pb2.DescribeResponse(lock=lock_description(state))

    async def List(  # noqa: N802 -- gRPC method names are CamelCase
        self, request: lock_pb2.ListRequest, context: ServicerContext
    ) -> lock_pb2.ListResponse:
        """Describe every lock under a prefix; see the proto."""
        states = await self._backend.list_locks(check.name_prefix(request.prefix))
        return lock_pb2.ListResponse(locks=[lock_description(state) for state in states])

    async def ValidateToken(  # noqa: N802 -- gRPC method names are CamelCase
        self, request: lock_pb2.ValidateTokenRequest, context: ServicerContext
    ) -> lock_pb2.ValidateTokenResponse:
        """Say whether a token is a current grant; see the proto."""
        name = check.lock_name(request.name)
        token = check.token(request.token)
        holders = (await self._backend.describe(name)).holders
        return lock_pb2.ValidateTokenResponse(
            valid=any(holder.token == token for holder in holders),
            current_token=max((holder.token for holder in holders), default=0),
        )

    async def _command(self, command: lock_pb2.LockCommand) -> lock_pb2.LockCommandResult:
        """Answer one command of the Commands stream as its unary call would."""
        match command.WhichOneof("command"):
            case "acquire":
                wait_s = check.wait_s(
                    command.acquire.wait_timeout, command.acquire.HasField("wait_timeout")
                )
                acquired = await self._acquire(command.acquire, wait_s)
                return lock_pb2.LockCommandResult(id=command.id, acquired=acquired)
            case "try_acquire":
                acquired = await self._acquire(command.try_acquire, 0.0)
                return lock_pb2.LockCommandResult(id=command.id, acquired=acquired)
            case _:  # "release": serve_commands passes no other command here
                released = await self._release(command.release)
                return lock_pb2.LockCommandResult(id=command.id, released=released)

    async def _release(self, request: lock_pb2.ReleaseRequest) -> lock_pb2.ReleaseResponse:
        outcome = await release_grant(self._backend, request, "hold lock")
        still_held = outcome is ReleaseOutcome.DECREMENTED
        return lock_pb2.ReleaseResponse(
            released=still_held or outcome is ReleaseOutcome.RELEASED, still_held=still_held
        )

    async def _acquire(
        self, request: lock_pb2.AcquireRequest, wait_s: float
    ) -> lock_pb2.AcquireResponse:
        name = check.lock_name(request.name)
        session = check.session_id(request.session_id)
        mode = check.mode(request.mode)
        request_id = check.request_id(request.request_id)
        lock_delay_s = check.lock_delay_s(request.lock_delay)
        permits = check.permits(
            mode, request.permits, reentrant=request.reentrant, lock_delay_s=lock_delay_s
        )
        grant = await self._backend.acquire(
            name,
            session,
            mode,
            wait_s=wait_s,
            request_id=request_id,
            lock_delay_s=lock_delay_s,
            reentrant=request.reentrant,
            permits=permits,
        )
        if grant is None:
            return lock_pb2.AcquireResponse(acquired=False)
        return lock_pb2.AcquireResponse(acquired=True, token=grant.token, holds=grant.holds)
