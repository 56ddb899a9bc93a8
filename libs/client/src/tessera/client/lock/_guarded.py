"""Running work only while a lock, a permit or a leadership lasts (the SDK's decorators)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tessera.core import FailedPreconditionError

R = TypeVar("R")


async def run_while_held(
    work: Awaitable[R], wait_lost: Callable[[], Awaitable[None]], lost_message: str
) -> R:
    """Await `work` unless the grant is lost first, in which case cancel it.

    Args:
        work: The guarded coroutine (not started yet, or a future).
        wait_lost: Returns once the grant is lost (`HeldLock.wait_lost`, `Leadership.wait_lost`).
        lost_message: The message of the error raised when the grant is lost first.

    Returns:
        What `work` returned.

    Raises:
        FailedPreconditionError: The grant was lost before `work` finished (`work` is
            cancelled).
        Exception: Whatever `work` raised.

    """
    running = asyncio.ensure_future(work)
    lost = asyncio.ensure_future(wait_lost())
    try:
        await asyncio.wait({running, lost}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        # The caller was cancelled: the work must not outlive the grant it is leaving.
        running.cancel()
        raise
    finally:
        lost.cancel()
    if not running.done():
        running.cancel()
        raise FailedPreconditionError(lost_message)
    return running.result()
