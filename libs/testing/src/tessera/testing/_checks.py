from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from tessera.testing._history import ACQUIRE, RELEASE, Operation


@dataclass(frozen=True, slots=True)
class Violation:
    """A safety property that a history breaks, with the operations that prove it.

    Attributes:
        kind: ``"overlapping holds"``, ``"token order"`` or ``"duplicate token"``.
        key: The lock concerned.
        operations: The operations involved, earliest first.
        description: A sentence for the test report.

    """

    kind: str
    key: str
    operations: tuple[Operation, ...]
    description: str


@dataclass(frozen=True, slots=True)
class _Hold:
    """When a client certainly held a lock: after its acquire returned, before its release began."""

    client: str
    start: float
    end: float
    acquire: Operation
    release: Operation


def check_exclusive_holds(history: Iterable[Operation]) -> list[Violation]:
    """Find moments when two clients both certainly held the same exclusive lock.

    A client certainly holds a lock from the end of its successful :data:`ACQUIRE` to the start
    of its next successful :data:`RELEASE` of that key. An acquisition whose release failed or
    never happened has no certain end (its lease may have expired), so it is not checked here;
    :func:`check_fencing_tokens` covers it. Holds that only touch (one ends exactly when the next
    starts) do not overlap. Sound: every violation reported is a real one.

    Args:
        history: Completed operations, in any order.

    Returns:
        One violation per pair of overlapping holds by different clients, earliest first; empty
        when the history is consistent with mutual exclusion.

    """
    holds_by_key: dict[str, list[_Hold]] = defaultdict(list)
    for (key, client), operations in _by_key_and_client(history).items():
        pending: Operation | None = None
        for operation in operations:
            if operation.op == ACQUIRE:
                pending = operation if operation.succeeded else None
            elif operation.op == RELEASE:
                if pending is not None and operation.succeeded and pending.end < operation.start:
                    holds_by_key[key].append(
                        _Hold(client, pending.end, operation.start, pending, operation)
                    )
                pending = None
    violations: list[Violation] = []
    for key, holds in sorted(holds_by_key.items()):
        active: list[_Hold] = []
        for hold in sorted(holds, key=lambda hold: hold.start):
            active = [other for other in active if other.end > hold.start]
            violations.extend(
                Violation(
                    "overlapping holds",
                    key,
                    (other.acquire, hold.acquire, other.release, hold.release),
                    f"{other.client} held {key!r} from {other.start:.6f} to {other.end:.6f} and "
                    f"{hold.client} held it from {hold.start:.6f} to {hold.end:.6f}",
                )
                for other in active
                if other.client != hold.client
            )
            active.append(hold)
    return violations


def check_fencing_tokens(history: Iterable[Operation]) -> list[Violation]:
    """Check that fencing tokens strictly increase in the order locks were granted.

    Only successful :data:`ACQUIRE` operations that carry a token count as grants. When one grant
    returned before another was invoked, the later one must have the larger token; grants that
    overlap in time may have been granted in either order, so only their tokens' distinctness is
    checked.

    Args:
        history: Completed operations, in any order.

    Returns:
        ``"token order"`` violations (a grant whose token is smaller than that of a grant which
        certainly preceded it, reported against the largest such token) and ``"duplicate token"``
        violations (two grants of one key with the same token); empty when the tokens are
        consistent.

    """
    grants_by_key: dict[str, list[_Grant]] = defaultdict(list)
    for operation in history:
        if operation.op == ACQUIRE and operation.succeeded and operation.token is not None:
            grants_by_key[operation.key].append(_Grant(operation.token, operation))
    violations: list[Violation] = []
    for key, grants in sorted(grants_by_key.items()):
        by_start = sorted(grants, key=lambda grant: grant.operation.start)
        first_with_token: dict[int, Operation] = {}
        for grant in by_start:
            earlier = first_with_token.setdefault(grant.token, grant.operation)
            if earlier is not grant.operation:
                violations.append(
                    Violation(
                        "duplicate token",
                        key,
                        (earlier, grant.operation),
                        f"{earlier.client} and {grant.operation.client} were both granted "
                        f"{key!r} with token {grant.token}",
                    )
                )
        # Sweep in invocation order, keeping the largest token among the grants that had
        # returned before the current one was invoked.
        by_end = sorted(grants, key=lambda grant: grant.operation.end)
        returned = 0
        highest: _Grant | None = None
        for grant in by_start:
            while returned < len(by_end) and by_end[returned].operation.end < grant.operation.start:
                if highest is None or by_end[returned].token > highest.token:
                    highest = by_end[returned]
                returned += 1
            if highest is not None and highest.token > grant.token:
                violations.append(
                    Violation(
                        "token order",
                        key,
                        (highest.operation, grant.operation),
                        f"{grant.operation.client} was granted {key!r} with token {grant.token} "
                        f"after {highest.operation.client} had been granted it with token "
                        f"{highest.token}",
                    )
                )
    return violations


@dataclass(frozen=True, slots=True)
class _Grant:
    token: int
    operation: Operation


def _by_key_and_client(history: Iterable[Operation]) -> dict[tuple[str, str], list[Operation]]:
    grouped: dict[tuple[str, str], list[Operation]] = defaultdict(list)
    for operation in history:
        grouped[operation.key, operation.client].append(operation)
    for operations in grouped.values():
        operations.sort(key=lambda operation: operation.start)
    return grouped
