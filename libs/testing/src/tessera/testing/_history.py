from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

ACQUIRE = "acquire"
"""``Operation.op`` of a lock acquisition."""
RELEASE = "release"
"""``Operation.op`` of a lock release."""
OK = "ok"
"""``Operation.result`` of an operation known to have succeeded."""


@dataclass(frozen=True, slots=True)
class Operation:
    """One completed client operation, as the client saw it.

    The operation took effect at some instant between ``start`` and ``end``; nothing more is
    known, which is what the checkers reason about.

    Attributes:
        client: Who invoked it (a client or worker name).
        op: What it was, e.g. :data:`ACQUIRE` or :data:`RELEASE`.
        start: ``time.monotonic()`` just before the call.
        end: ``time.monotonic()`` just after the outcome was known.
        result: The outcome: :data:`OK`, or anything else for failures and unknown outcomes
            (``"timeout"``, ``"error"``, ...).
        token: The fencing token an acquisition was granted, if any.
        key: The lock (or other object) operated on.

    """

    client: str
    op: str
    start: float
    end: float
    result: str
    token: int | None = None
    key: str = ""

    @property
    def succeeded(self) -> bool:
        """Whether the result is :data:`OK`."""
        return self.result == OK


@dataclass(slots=True)
class Invocation:
    """An operation that started and has no outcome yet; :meth:`complete` records it.

    Attributes:
        history: Where the completed operation goes.
        client: Who invoked it.
        op: What it is.
        key: What it operates on.
        start: ``time.monotonic()`` when it was invoked.

    """

    history: History
    client: str
    op: str
    key: str
    start: float = field(default_factory=time.monotonic)

    def complete(self, result: str, token: int | None = None) -> Operation:
        """Record the outcome, now, and return the operation added to the history.

        Args:
            result: :data:`OK`, or what went wrong.
            token: The fencing token granted, for acquisitions.

        """
        operation = Operation(
            self.client, self.op, self.start, time.monotonic(), result, token, self.key
        )
        self.history.record(operation)
        return operation


class History:
    """The operations of a concurrent test, in the order they completed; safe across threads.

    Typical use around each client call::

        invocation = history.invoke("client-1", ACQUIRE, key="orders")
        try:
            lease = await lock.acquire("orders")
        except TesseraError:
            invocation.complete("error")
        else:
            invocation.complete(OK, token=lease.token)

    then ``assert check_exclusive_holds(history) == []``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._operations: list[Operation] = []

    def invoke(self, client: str, op: str, *, key: str = "") -> Invocation:
        """Start timing an operation; complete the returned invocation when it is done."""
        return Invocation(self, client, op, key)

    def record(self, operation: Operation) -> None:
        """Add an operation that already completed (hand-built histories use this)."""
        with self._lock:
            self._operations.append(operation)

    @property
    def operations(self) -> tuple[Operation, ...]:
        """A snapshot of the operations recorded so far."""
        with self._lock:
            return tuple(self._operations)

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations)

    def __len__(self) -> int:
        with self._lock:
            return len(self._operations)
