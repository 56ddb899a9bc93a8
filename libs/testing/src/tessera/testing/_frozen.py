"""Cancelling a call while the server it waits on is frozen: the request sent, no answer yet."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from tessera.core.embedded import EmbeddedServer

#: Long enough for a call started on a frozen server to have written its request.
_SEND_S = 0.1


async def cancel_while_frozen(server: EmbeddedServer, call: Coroutine[Any, Any, Any]) -> None:
    """Start `call`, cancel it while `server` is paused, resume the server, await the call's end.

    The call's request reaches the paused server's socket unanswered, so the cancel lands
    between the request and its answer: what a cancelled caller must undo (the server still
    runs the request once resumed).

    Raises:
        AssertionError: The call ended otherwise than cancelled (returned or raised).

    """
    server.pause()
    try:
        task = asyncio.create_task(call)
        await asyncio.sleep(_SEND_S)  # the bytes now wait in the frozen server's socket
        task.cancel()
    finally:
        server.resume()
    try:
        outcome = await task
    except asyncio.CancelledError:
        return
    raise AssertionError(f"the call was not cancelled: it returned {outcome!r}")
