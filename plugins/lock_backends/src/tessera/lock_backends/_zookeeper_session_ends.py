"""Waking a process's waiters as soon as their own session ends, wherever it was ended."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable

from kazoo.exceptions import NoNodeError  # type: ignore[import-untyped]  # kazoo ships no types
from kazoo.protocol.states import (  # type: ignore[import-untyped]  # kazoo ships no types
    EventType,
    WatchedEvent,
)

from tessera.core import NotFoundError
from tessera.lock_backends._zookeeper_client import Requests, ZooKeeperConnection
from tessera.lock_backends._zookeeper_layout import session_path

#: A waiter's future: fails with `NotFoundError` once its session ended, or with `BackendError`
#: when the end could not be watched; it never succeeds.
Ending = asyncio.Future[None]


class SessionEnds:
    """Tells this process's waiters at once that their session ended, whoever ended it.

    A session's end (a close, or an expiry found by any process) deletes its node with its
    entries in one transaction. A waiter watches the entries ahead of it, not its own, so
    without this it would learn of the end only when its sleep ran out (up to the TTL). Each
    session with a waiter here has one data watch on its node, however many of its waiters this
    process has; the node's deletion fires it. A renewal (a write of the node) fires it too: it
    is then set again while one of the session's waiters here still waits, else it lapses
    until the next wait. A data watch, not a children watch: the session's children (its
    places) change at each acquisition and release, and a busy session would set a children
    watch again at each of them, while renewals come at the pace of the client's keep-alives,
    whatever the lock traffic. Ends made by this process wake the waiters at once (`ended`),
    without waiting for the watch's event.

    Call only from the event loop the connection runs on.

    Args:
        connection: Where the watches are set.

    """

    def __init__(self, connection: ZooKeeperConnection) -> None:
        self._zk = connection
        self._waits: dict[str, set[Ending]] = defaultdict(set)
        # The session watches set and not fired yet, each with the token of its watch function
        # (after a reconnect kazoo may still call one set before: it is then not the current).
        self._watched: dict[str, object] = {}
        self._requests: Requests | None = None

    async def watch(self, session_id: str) -> Ending:
        """Return a future that fails once session `session_id` ended (see `Ending`).

        Sets the session's watch unless it is set already; does not wait for the answer (a
        session already gone fails the future when it comes). Call `forget` when done with it.
        """
        zk = self._requests = await self._zk.requests()
        ending: Ending = asyncio.get_running_loop().create_future()
        self._waits[session_id].add(ending)
        if session_id not in self._watched:
            self._arm(zk, session_id)
        return ending

    def forget(self, session_id: str, ending: Ending) -> None:
        """Drop a future returned by `watch`; the session's watch stays until it fires."""
        if not ending.cancel():
            ending.exception()  # it failed: its waiter raised that error or gave up first
        waits = self._waits.get(session_id)
        if waits is not None:
            waits.discard(ending)
            if not waits:
                del self._waits[session_id]

    def ended(self, session_id: str) -> None:
        """Fail the waits of session `session_id`, which ended."""
        self._fail(session_id, lambda: NotFoundError(f"session {session_id!r} ended while waiting"))

    def watches_lost(self) -> None:
        """Set again the watches of sessions with waiters (after a reconnect: they may be lost)."""
        self._watched.clear()
        if self._requests is not None:
            for session_id in self._waits:
                self._arm(self._requests, session_id)

    def _arm(self, zk: Requests, session_id: str) -> None:
        token = self._watched[session_id] = object()

        def fired(event: WatchedEvent) -> None:
            if self._watched.get(session_id) is not token:
                return
            del self._watched[session_id]
            if event.type == EventType.DELETED:
                self.ended(session_id)
            elif event.type == EventType.CHANGED and session_id in self._waits:
                self._arm(zk, session_id)  # renewed: watch its next write
            # NONE: the ZooKeeper session expired; `watches_lost` sets it again on reconnect.

        def answered(answer: asyncio.Future[object]) -> None:
            error = answer.exception()
            if error is None or self._watched.get(session_id) is not token:
                return
            del self._watched[session_id]
            if isinstance(error, NoNodeError):
                self.ended(session_id)  # ended before the watch was set
            else:  # a BackendError: its waiters cannot know when the session ends
                self._fail(session_id, lambda: error)

        # A read: unlike `exists`, it sets no watch on a node already gone.
        zk.get(session_path(session_id), zk.event_watcher(fired)).add_done_callback(answered)

    def _fail(self, session_id: str, error: Callable[[], BaseException]) -> None:
        for ending in self._waits.get(session_id, ()):
            if not ending.done():
                ending.set_exception(error())
