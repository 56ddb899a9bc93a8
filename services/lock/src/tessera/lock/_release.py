"""Giving back a grant: the shared body of `Release` and an election's `Resign`."""

from __future__ import annotations

from typing import Protocol

from tessera.core import FailedPreconditionError
from tessera.core.plugins import LockBackend, ReleaseOutcome
from tessera.lock import _validation as check


class GrantRequest(Protocol):
    """A request naming one grant: `ReleaseRequest` or `ResignRequest`."""

    @property
    def name(self) -> str: ...
    @property
    def session_id(self) -> str: ...
    @property
    def token(self) -> int: ...


async def release_grant(
    backend: LockBackend, request: GrantRequest, relation: str
) -> ReleaseOutcome:
    """Validate `request` and give back one hold of its grant.

    Args:
        backend: Where the grant lives.
        request: The grant's lock name, session and token.
        relation: How the holder relates to the lock, for the error: "hold lock" or "lead".

    Returns:
        `RELEASED`, `DECREMENTED` or `ALREADY_GONE` (idempotent for the last hold).

    Raises:
        ValidationError: A field is malformed (named).
        FailedPreconditionError: The session waits for the lock, or the token is not its grant.

    """
    name = check.lock_name(request.name)
    session = check.session_id(request.session_id)
    token = check.token(request.token)
    outcome = await backend.release(name, session, token)
    if outcome is ReleaseOutcome.NOT_HOLDER:
        raise FailedPreconditionError(
            f"token: session {session!r} does not {relation} {name!r} with token {token}"
        )
    return outcome
