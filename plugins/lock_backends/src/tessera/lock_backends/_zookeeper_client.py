"""An asyncio face on one kazoo client: requests never block the event loop.

kazoo's blocking calls wait on a condition variable, which would stall the loop. Its `*_async`
calls only queue the request for kazoo's connection thread and return an `IAsyncResult`;
`ZooKeeperConnection` links each result to an asyncio future through `call_soon_threadsafe`, so a
request costs one hop from kazoo's completion thread to the loop and no thread of ours. Requests
issued one after another without awaiting are pipelined on the one connection, and ZooKeeper
answers them in order (a read after a write of the same client sees the write).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from kazoo.client import KazooClient  # type: ignore[import-untyped]  # kazoo ships no types
from kazoo.exceptions import (  # type: ignore[import-untyped]  # kazoo ships no types
    BadVersionError,
    KazooException,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    RolledBackError,
    RuntimeInconsistency,
)
from kazoo.protocol.states import (  # type: ignore[import-untyped]  # kazoo ships no types
    KazooState,
    WatchedEvent,
)

from tessera.core import BackendError

#: A kazoo watch function: called once, on kazoo's thread, with the event.
Watch = Callable[[Any], None]

#: Seconds kazoo waits to connect; also the ZooKeeper session timeout of the process's client
#: (no lock state depends on that session: every node the backend writes is persistent).
CONNECT_TIMEOUT_S = 10.0


class ZooKeeperConnection:
    """One kazoo client per backend, connected on first use, with awaitable requests.

    Every method raises `BackendError` (retryable) when ZooKeeper cannot be reached; the node
    errors a caller branches on (`NoNodeError`, `NodeExistsError`, `BadVersionError`) pass through
    unchanged.

    Args:
        hosts: kazoo's connection string (`host:port,host:port`).
        on_reconnect: Called on the event loop whenever the client reconnects: watches set
            before may have been lost with an expired ZooKeeper session.

    """

    def __init__(self, hosts: str, on_reconnect: Callable[[], None]) -> None:
        self._hosts = hosts
        self._on_reconnect = on_reconnect
        self._client: Any = None
        self._starting = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._requests: Requests | None = None

    async def requests(self) -> Requests:
        """Return the requests of the started client, starting it (in a thread) on first use."""
        async with self._starting:
            if self._client is None:
                client = KazooClient(hosts=self._hosts, timeout=CONNECT_TIMEOUT_S)
                try:
                    await asyncio.to_thread(client.start, CONNECT_TIMEOUT_S)
                except Exception as error:
                    await asyncio.to_thread(client.close)
                    raise BackendError(
                        f"zookeeper: cannot connect to {self._hosts}: {error}",
                        backend="zookeeper",
                    ) from error
                self._loop = asyncio.get_running_loop()
                client.add_listener(self._state_changed)
                self._client = client
                self._requests = Requests(client, self._loop)
        assert self._requests is not None
        return self._requests

    async def close(self) -> None:
        """Stop and close the client (in a thread: kazoo joins its threads)."""
        if self._client is not None:
            client, self._client = self._client, None
            await asyncio.to_thread(client.stop)
            await asyncio.to_thread(client.close)

    def _state_changed(self, state: Any) -> None:
        # kazoo calls listeners on its connection thread.
        if state == KazooState.CONNECTED and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                self._loop.call_soon_threadsafe(self._on_reconnect)


class Requests:
    """ZooKeeper requests on a started kazoo client, each answered through an asyncio future.

    Each method queues its request at once and returns the future of its answer, so that
    requests made one after another without awaiting are pipelined. The futures raise
    `BackendError` when ZooKeeper failed or cannot be reached, and pass the node errors
    (`NoNodeError`, `NodeExistsError`, `BadVersionError`, `NotEmptyError`) unchanged.
    Call only from the event loop the client was started on.
    """

    def __init__(self, client: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._loop = loop

    def get(self, path: str, watch: Watch | None = None) -> asyncio.Future[Any]:
        """Read a node: `(data, stat)`."""
        return self._send(self._client.get_async, path, watch=watch)

    def children(
        self, path: str, watch: Watch | None = None, *, include_data: bool = False
    ) -> asyncio.Future[Any]:
        """List a node's children: `list[str]`, or `(list[str], stat)` with `include_data`."""
        return self._send(
            self._client.get_children_async, path, watch=watch, include_data=include_data
        )

    def exists(self, path: str, watch: Watch | None = None) -> asyncio.Future[Any]:
        """Stat a node: its stat, or None when it does not exist (the watch waits for it)."""
        return self._send(self._client.exists_async, path, watch=watch)

    def set(self, path: str, data: bytes, version: int = -1) -> asyncio.Future[Any]:
        """Write a node's data if its version is `version` (-1: any); answers its new stat."""
        return self._send(self._client.set_async, path, data, version)

    def create(
        self, path: str, data: bytes = b"", *, makepath: bool = False, include_data: bool = False
    ) -> asyncio.Future[Any]:
        """Create a persistent node: its path, or `(path, stat)` with `include_data`."""
        return self._send(
            self._client.create_async, path, data, makepath=makepath, include_data=include_data
        )

    def delete(self, path: str, version: int = -1) -> asyncio.Future[Any]:
        """Delete a node if its version is `version` (-1: any)."""
        return self._send(self._client.delete_async, path, version)

    def commit(self, operations: Callable[[Any], None]) -> asyncio.Future[list[Any]]:
        """Run one transaction; `operations(transaction)` adds its operations (kazoo's API).

        Returns:
            The future of the list of results, one per operation; see `failure`.

        """
        transaction = self._client.transaction()
        operations(transaction)
        return self._send(transaction.commit_async)

    def watcher(self, wake: Callable[[], None]) -> Watch:
        """Return a kazoo watch function that calls `wake` on the event loop."""
        return self.event_watcher(lambda _event: wake())

    def event_watcher(self, handle: Callable[[WatchedEvent], None]) -> Watch:
        """Return a kazoo watch function that calls `handle(event)` on the event loop.

        kazoo calls it with the node's event (`event.type` is an `EventType`), or with type
        `EventType.NONE` when the ZooKeeper session expired and took the watch with it.
        """
        loop = self._loop

        def watch(event: WatchedEvent) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                loop.call_soon_threadsafe(handle, event)

        return watch

    def _send(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        # A request pipelined behind one that failed may never be awaited: its error is known.
        future.add_done_callback(_retrieved)
        loop = self._loop

        def done(result: Any) -> None:
            # Runs on kazoo's completion thread.
            try:
                value = result.get_nowait()
            except Exception as error:  # every failure is handed to the awaiting task
                loop.call_soon_threadsafe(_fail, future, error)
            else:
                loop.call_soon_threadsafe(_succeed, future, value)

        try:
            call(*args, **kwargs).rawlink(done)
        except KazooException as error:
            future.set_exception(_backend_error(error))
        return future


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _succeed(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        # The node errors a caller branches on pass; anything else means ZooKeeper failed.
        passes = isinstance(error, NoNodeError | NodeExistsError | BadVersionError | NotEmptyError)
        future.set_exception(error if passes else _backend_error(error))


def _backend_error(error: BaseException) -> BackendError:
    return BackendError(f"zookeeper: {type(error).__name__} {error}", backend="zookeeper")


def failure(results: list[Any]) -> tuple[int, Exception] | None:
    """Return the index and error of the operation that made a transaction fail, or None.

    A failed transaction answers an error for every operation: the failing one's own, and
    "rolled back" or "not run" for the others.
    """
    for index, result in enumerate(results):
        if isinstance(result, Exception) and not isinstance(
            result, RolledBackError | RuntimeInconsistency
        ):
            return index, result
    return None
