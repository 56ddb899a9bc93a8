from __future__ import annotations

import functools
from collections.abc import Sequence

# RESP2, the protocol redis-py speaks by default: a command is an array of bulk strings.
# redis-py's `pack_command` encodes, measures and copies every argument of every call (about
# 0.7 µs a key); the keys of a batch recur call after call, so their encodings are kept and a
# command is one join.


def _bulk_string(text: str) -> bytes:
    data = text.encode()  # UTF-8, strict: what redis-py's encoder does with a str
    return b"$%d\r\n%b\r\n" % (len(data), data)


#: Keys and script digests recur on every call: their encodings are kept (bounded).
_known_bulk_string = functools.lru_cache(maxsize=65_536)(_bulk_string)


def evalsha_command(sha: str, keys: Sequence[str], *arguments: str) -> bytes:
    """Return `EVALSHA sha len(keys) *keys *arguments` as one RESP2 command.

    Byte for byte what redis-py's `pack_command` sends for the same arguments.
    """
    return b"".join(
        [
            b"*%d\r\n$7\r\nEVALSHA\r\n" % (len(keys) + len(arguments) + 3),
            _known_bulk_string(sha),
            _bulk_string(str(len(keys))),
            *map(_known_bulk_string, keys),
            *map(_bulk_string, arguments),  # a batch's joined arguments seldom recur: not kept
        ]
    )
