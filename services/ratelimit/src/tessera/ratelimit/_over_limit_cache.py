from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable


class OverLimitCache:
    """A replica's memory of Redis keys known to be over their limit, until their reset.

    Like envoyproxy/ratelimit's local cache: once Redis said a key admits no unit before some
    time, calls for that key are denied here without a round trip until then. Entries expire at
    the time Redis gave (the window's end for fixed windows, the retry time for the others), so
    the cache never denies a request Redis would admit, except after a `Reset` on ANOTHER replica
    (this one forgets the keys it resets). Bounded: at `max_entries` the entry added earliest is
    dropped.

    Concurrency: one event loop.

    Args:
        max_entries: Capacity; 0 disables the cache.
        clock: Monotonic seconds (tests pass their own).

    """

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_entries = max_entries
        self._clock = clock
        self._until: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    def seconds_left(self, key: str) -> float:
        """Return how long `key` stays over its limit, or 0 when it is not known to be."""
        until = self._until.get(key)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._until[key]
            return 0.0
        return left

    def add(self, key: str, seconds: float) -> None:
        """Remember that `key` admits nothing for `seconds` (ignored unless positive and finite)."""
        if self._max_entries <= 0 or not 0 < seconds < float("inf"):
            return
        self._until[key] = self._clock() + seconds
        self._until.move_to_end(key)
        while len(self._until) > self._max_entries:
            self._until.popitem(last=False)

    def forget(self, keys: Iterable[str]) -> None:
        """Drop `keys` (after a Reset)."""
        for key in keys:
            self._until.pop(key, None)
