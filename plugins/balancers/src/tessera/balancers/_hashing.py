from __future__ import annotations

import xxhash


def hash64(data: bytes, seed: int = 0) -> int:
    """Hash to a stable 64-bit integer (XXH3): equal across processes, machines and Python versions.

    Python's `hash()` is salted per process, so two clients would disagree on where a key lives.
    """
    return xxhash.xxh3_64_intdigest(data, seed)
