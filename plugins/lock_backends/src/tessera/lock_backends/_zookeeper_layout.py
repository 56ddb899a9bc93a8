"""Where the ZooKeeper lock backend keeps its nodes, and how their names and data read.

Every node is persistent (none is bound to the ZooKeeper session of a service process):

- `ZK_ROOT/sessions/<session>`: a lock session. Data `{"ttl_ms": n}`; its `mtime` (stamped by
  ZooKeeper's leader) is the last renewal, so the session lives until `mtime + ttl_ms` by
  ZooKeeper's clock.
- `ZK_ROOT/sessions/<session>/n-<quoted name>`: the session's place on one lock, its *place*
  node. Data `Place`; its `czxid` is the fencing token of the grant. At most one per session and
  lock: creating it is what makes an acquisition unique.
- `ZK_ROOT/locks/n-<quoted name>`: one lock. Its children are the queue entries
  `q-<session>-<mode>-<permits>-<sequence>` (sequential: the sequence orders the queue, in the
  same order as the tokens, because an entry and its place are created in one transaction), whose
  data is the entry's value, and lock-delay markers `d-<until ms>-<session>`. Its own data is
  rewritten by `proclaim`, so that observers watching it see the change.
- `ZK_ROOT/clock`: written to read ZooKeeper's clock (the `mtime` of the write).
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from urllib.parse import quote, unquote

from tessera.core.plugins import LockMode
from tessera.lock_backends._queue import QueuedEntry

#: The backend's root node.
ZK_ROOT = "/tessera/lock"
SESSIONS = f"{ZK_ROOT}/sessions"
LOCKS = f"{ZK_ROOT}/locks"
CLOCK = f"{ZK_ROOT}/clock"

_MODE_CODES = {LockMode.EXCLUSIVE: "x", LockMode.SHARED: "s", LockMode.PERMIT: "p"}
_CODE_MODES = {code: mode for mode, code in _MODE_CODES.items()}
_SESSION_ID_LENGTH = 16


@dataclass(frozen=True, slots=True)
class Place:
    """What a session's place node on one lock says about its entry.

    Attributes:
        mode: The mode it holds or waits for (`LockMode.value`).
        request_id: The id of the acquisition that queued it.
        lock_delay_ms: Its lock-delay.
        permits: The semaphore's size in mode `PERMIT`, else 0.
        holds: Reentrant hold count.
        reentry: The request id of the latest reentrant acquisition that added a hold.

    """

    mode: str
    request_id: str
    lock_delay_ms: int
    permits: int
    holds: int = 1
    reentry: str = ""

    def encode(self) -> bytes:
        """Return the node data."""
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Place:
        """Read node data written by `encode`."""
        return cls(**json.loads(data))


@dataclass(frozen=True, slots=True)
class QueueNode:
    """One queue entry as named in ZooKeeper.

    Attributes:
        name: The child's name.
        entry: The entry, with its sequence number as its token (the order of the queue; the
            fencing token is the czxid of its place node).

    """

    name: str
    entry: QueuedEntry


@dataclass(frozen=True, slots=True)
class DelayMarker:
    """A lock-delay: the lock is granted to nobody before `until_ms` (ZooKeeper's clock)."""

    name: str
    until_ms: int


def is_session_id(session_id: str) -> bool:
    """Whether `session_id` is spelled as this backend's session ids are (16 hex digits)."""
    return len(session_id) == _SESSION_ID_LENGTH and all(
        char in "0123456789abcdef" for char in session_id
    )


@functools.lru_cache(maxsize=1024)  # waiters of a busy lock ask for its node at every wake-up
def node_name(name: str) -> str:
    """Return the node name of lock `name` (never `.` or `..`, which ZooKeeper refuses)."""
    return "n-" + quote(name, safe="")


def lock_name(node: str) -> str:
    """Return the lock name a `node_name` spells."""
    return unquote(node[2:])


def session_path(session_id: str) -> str:
    """Return the node of a session."""
    return f"{SESSIONS}/{session_id}"


def place_path(session_id: str, name: str) -> str:
    """Return the place node of a session on lock `name`."""
    return f"{SESSIONS}/{session_id}/{node_name(name)}"


def lock_path(name: str) -> str:
    """Return the node of lock `name`."""
    return f"{LOCKS}/{node_name(name)}"


def entry_prefix(name: str, session_id: str, mode: LockMode, permits: int) -> str:
    """Return the path a sequential entry is created with (ZooKeeper appends the sequence)."""
    return f"{lock_path(name)}/q-{session_id}-{_MODE_CODES[mode]}-{permits}-"


def marker_path(name: str, until_ms: int, session_id: str) -> str:
    """Return the node of a lock-delay marker left by an expired holder."""
    return f"{lock_path(name)}/d-{until_ms}-{session_id}"


def parse_children(children: list[str]) -> tuple[list[QueueNode], list[DelayMarker]]:
    """Split a lock's children into its queue entries and its lock-delay markers."""
    entries: list[QueueNode] = []
    markers: list[DelayMarker] = []
    for child in children:
        kind, _, rest = child.partition("-")
        if kind == "q":
            session_id, code, permits, sequence = rest.split("-")
            entry = QueuedEntry(session_id, _CODE_MODES[code], int(sequence), int(permits))
            entries.append(QueueNode(child, entry))
        elif kind == "d":
            markers.append(DelayMarker(child, int(rest.partition("-")[0])))
    return entries, markers
