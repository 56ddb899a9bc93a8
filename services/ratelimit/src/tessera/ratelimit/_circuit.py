from __future__ import annotations

import time


class RedisCircuit:
    """A circuit around Redis so that the failure policy answers at once while Redis is down.

    Closed: every call goes to Redis. After a failure it opens for `open_s`: calls skip Redis and
    get the domain's failure policy immediately. Then it lets ONE probe call through (half-open);
    its success closes the circuit, its failure opens it again. With short socket timeouts this
    bounds what a call waits for a dead Redis, and Redis serves again at most `open_s` plus one
    call after it is back.

    Concurrency: one event loop.

    Args:
        open_s: How long the circuit stays open after a failure.

    """

    def __init__(self, open_s: float) -> None:
        self._open_s = open_s
        self._open_until = 0.0
        self._failed = False
        self._probing = False

    def allows(self) -> bool:
        """Whether a call may go to Redis now (claims the probe when half-open)."""
        if not self._failed:
            return True
        if self._probing or time.monotonic() < self._open_until:
            return False
        self._probing = True
        return True

    def succeeded(self) -> None:
        """Record a call that reached Redis: close the circuit."""
        self._failed = self._probing = False

    def abandoned(self) -> None:
        """Record a call that ended without telling whether Redis works (it was cancelled)."""
        self._probing = False

    def failed(self) -> None:
        """Record a call that could not reach Redis: open the circuit."""
        self._failed, self._probing = True, False
        self._open_until = time.monotonic() + self._open_s

    @property
    def is_open(self) -> bool:
        """Whether calls are currently kept away from Redis."""
        return self._failed
