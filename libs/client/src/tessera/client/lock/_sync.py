from __future__ import annotations

import asyncio
import functools
import queue
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, contextmanager
from typing import ParamSpec, Protocol, TypeVar

from tessera.client._sync_facade import SyncFacade
from tessera.client.lock._client import HeldLock, LockClient, Mode
from tessera.client.lock._election import Leader, Leadership
from tessera.core import FailedPreconditionError

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")


class _Losable(Protocol):
    """A grant the decorators hold: a `HeldLock` (lock or permit) or a `Leadership`."""

    @property
    def lost(self) -> bool: ...


class SyncLockClient(SyncFacade[LockClient]):
    """Blocking facade over `LockClient` for code without an event loop.

    The async client runs on an event loop in a daemon thread owned by this object, which also
    keeps sessions alive while the calling thread works (or blocks). Thread-safe: any thread may
    call it.

    Args:
        target: The lock service, `host:port`.

    Example::

        with SyncLockClient("127.0.0.1:50052") as client, client.lock("orders", ttl=10) as held:
            resource.write(data, fencing_token=held.token)

    """

    def __init__(self, target: str) -> None:
        super().__init__(lambda: LockClient.connect(target), thread_name="tessera-lock-client")

    @contextmanager
    def lock(
        self,
        name: str,
        *,
        ttl: float = 10.0,
        mode: Mode = "exclusive",
        wait: float | None = None,
        lock_delay: float = 0.0,
    ) -> Iterator[HeldLock]:
        """Hold a lock for a `with` block; see `LockClient.lock` (same arguments and errors)."""
        with self._entered(
            self._client.lock(name, ttl=ttl, mode=mode, wait=wait, lock_delay=lock_delay)
        ) as held:
            yield held

    @contextmanager
    def semaphore(
        self, name: str, *, permits: int, ttl: float = 10.0, wait: float | None = None
    ) -> Iterator[HeldLock]:
        """Hold a permit for a `with` block; see `LockClient.semaphore` (same arguments, errors)."""
        with self._entered(
            self._client.semaphore(name, permits=permits, ttl=ttl, wait=wait)
        ) as held:
            yield held

    @contextmanager
    def campaign(
        self, name: str, value: bytes = b"", *, ttl: float = 10.0, wait: float | None = None
    ) -> Iterator[Leadership]:
        """Lead an election for a `with` block; see `LockClient.campaign`.

        `Leadership.proclaim` is a coroutine: call `proclaim` of this facade instead.
        """
        with self._entered(self._client.campaign(name, value, ttl=ttl, wait=wait)) as leadership:
            yield leadership

    def proclaim(self, leadership: Leadership, value: bytes) -> None:
        """Publish a new value as leader; see `Leadership.proclaim`."""
        self._run(leadership.proclaim(value))

    def leader(self, name: str) -> Leader | None:
        """See `LockClient.leader`."""
        return self._run(self._client.leader(name))

    def observe(self, name: str) -> Generator[Leader | None, None, None]:
        """Yield the leader of an election now and at every change; see `LockClient.observe`.

        Blocks the calling thread between changes. Closing the generator (`close()`, or
        leaving a `for` loop over it and dropping it) cancels the stream.

        Raises:
            TesseraError: The service refused the stream for a reason a retry cannot fix, as
                `LockClient.observe` (which reopens broken streams itself).

        """
        changes: queue.Queue[tuple[Leader | None, Exception | None, bool]] = queue.Queue()

        async def forward() -> None:
            try:
                async for leader in self._client.observe(name):
                    changes.put((leader, None, False))
            except Exception as error:  # handed to the observing thread, which raises it
                changes.put((None, error, True))
            else:
                changes.put((None, None, True))

        forwarding = asyncio.run_coroutine_threadsafe(forward(), self._loop)
        try:
            while True:
                leader, error, ended = changes.get()
                if error is not None:
                    raise error
                if ended:
                    return
                yield leader
        finally:
            forwarding.cancel()

    def locked(
        self,
        name: str,
        *,
        ttl: float = 10.0,
        mode: Mode = "exclusive",
        wait: float | None = None,
        lock_delay: float = 0.0,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a function so that every call runs holding the lock `name`.

        Each call takes the lock as `lock` does (same arguments and errors) and releases it
        when the function returns or raises. A blocking function cannot be interrupted: if the
        lock was lost by the time it returns, its result is dropped and
        `FailedPreconditionError` is raised, so the caller knows the work ran partly unguarded
        (for long work use `lock`, check `held.lost` and present `held.token`).
        """
        return self._guarding(
            lambda: self.lock(name, ttl=ttl, mode=mode, wait=wait, lock_delay=lock_delay),
            f"lock {name!r}",
        )

    def with_permit(
        self, name: str, *, permits: int, ttl: float = 10.0, wait: float | None = None
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a function so that every call runs holding a permit of semaphore `name`.

        Like `locked`, with a permit taken as `semaphore` does (same arguments and errors).
        """
        return self._guarding(
            lambda: self.semaphore(name, permits=permits, ttl=ttl, wait=wait),
            f"the permit of {name!r}",
        )

    def leading(
        self, name: str, value: bytes = b"", *, ttl: float = 10.0, wait: float | None = None
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a function so that every call runs as leader of election `name`.

        Like `locked`, leading as `campaign` does (same arguments and errors): each call waits
        until elected and resigns when the function returns or raises.
        """
        return self._guarding(
            lambda: self.campaign(name, value, ttl=ttl, wait=wait), f"leadership of {name!r}"
        )

    def validate_token(self, name: str, token: int) -> bool:
        """See `LockClient.validate_token`."""
        return self._run(self._client.validate_token(name, token))

    @staticmethod
    def _guarding(
        hold: Callable[[], AbstractContextManager[_Losable]], what: str
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Return a decorator running each call inside `hold()`; see `locked`."""

        def decorate(function: Callable[P, R]) -> Callable[P, R]:
            @functools.wraps(function)
            def run_held(*args: P.args, **kwargs: P.kwargs) -> R:
                with hold() as held:
                    result = function(*args, **kwargs)
                    if held.lost:
                        raise FailedPreconditionError(
                            f"{what} was lost while {function.__name__} ran"
                        )
                    return result

            return run_held

        return decorate

    @contextmanager
    def _entered(self, manager: AbstractAsyncContextManager[T]) -> Iterator[T]:
        """Enter and exit an async context manager of the client on the facade's loop."""
        held = self._run(manager.__aenter__())
        try:
            yield held
        except BaseException as error:
            if not self._run(manager.__aexit__(type(error), error, error.__traceback__)):
                raise
        else:
            self._run(manager.__aexit__(None, None, None))
