from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from tessera.core import ValidationError
from tessera.core.plugins import LockBackend
from tessera.lock._convert import duration
from tessera.proto.lock.v1 import lock_pb2

# How long after the lease should have ended the server checks it, so that a keep-alive that is
# on its way is not taken for silence.
_EXPIRY_MARGIN_S = 0.2


async def keep_alive_stream(
    backend: LockBackend, requests: AsyncIterator[lock_pb2.KeepAliveRequest]
) -> AsyncIterator[lock_pb2.KeepAliveResponse]:
    """Renew one session per request, and push its loss even when the client is silent.

    One stream serves one session: the first request names it. Each request renews it and is
    answered with the renewed TTL. When no request arrives before the lease would end, the server
    asks the backend whether the session still lives; once it is gone (or a renewal finds it gone)
    the stream sends `lost` and ends.

    Raises:
        ValidationError: A request has no session id, or names another session than the first.
        BackendError: The backend failed.

    """
    loop = asyncio.get_running_loop()
    session: str | None = None
    expires_at: float | None = None
    next_request: asyncio.Future[lock_pb2.KeepAliveRequest] | None = None
    try:
        while True:
            if next_request is None:
                next_request = asyncio.ensure_future(anext(requests))
            timeout = None if expires_at is None else expires_at + _EXPIRY_MARGIN_S - loop.time()
            done, _ = await asyncio.wait({next_request}, timeout=timeout)
            sent_at = loop.time()
            if done:
                try:
                    request = next_request.result()
                except StopAsyncIteration:
                    return
                next_request = None
                session = _same_session(session, request.session_id)
                ttl = await backend.keep_alive(session)
            else:
                assert session is not None  # a deadline exists only after the first request
                ttl = await backend.session_ttl(session)
            if ttl <= 0:
                yield lock_pb2.KeepAliveResponse(session_id=session, lost=True)
                return
            expires_at = sent_at + ttl
            if done:
                yield lock_pb2.KeepAliveResponse(session_id=session, ttl=duration(ttl))
    finally:
        if next_request is not None:
            next_request.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await next_request


def _same_session(session: str | None, requested: str) -> str:
    if not requested:
        raise ValidationError.for_field("session_id", "must not be empty")
    if session is not None and requested != session:
        raise ValidationError.for_field("session_id", "must name the stream's first session")
    return requested
