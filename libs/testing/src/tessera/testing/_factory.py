from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Protocol, Self, TypeVar


class Startable(Protocol):
    """What a factory can run: an embedded server or cluster."""

    def start(self, timeout: float = ...) -> Self:
        """Start and return once it answers."""
        ...

    def stop(self, timeout: float = ...) -> None:
        """Stop whatever runs."""
        ...


S = TypeVar("S", bound=Startable)


class ServerFactory(Generic[S]):
    """Starts fresh servers of one kind for one test, and stops them all when the test ends.

    Fault tests that kill, pause or restart a server use a factory instead of the shared session
    server. Calling it blocks until the server answers (an async test may call it through
    ``asyncio.to_thread``).

    Args:
        make: Builds an unstarted server from a new directory and keyword options, e.g.
            ``RedisServer``.
        directory: Returns a new empty directory per call.

    Example::

        def test_survives_restart(redis_factory):
            redis = redis_factory(appendonly=True)
            ...
            redis.kill()
            redis.restart()

    """

    def __init__(self, make: Callable[..., S], directory: Callable[[], Path]) -> None:
        self._make = make
        self._directory = directory
        self._started: list[S] = []

    def __call__(self, **options: Any) -> S:
        """Build a server with ``options`` (keyword arguments of its class), start it, return it.

        Raises:
            BinaryNotFoundError: The server's binary is not installed.
            ServerStartError: The server did not start.

        """
        server = self._make(self._directory(), **options)
        self._started.append(server)
        return server.start()

    def close(self) -> None:
        """Stop every server this factory started, newest first."""
        while self._started:
            self._started.pop().stop()
