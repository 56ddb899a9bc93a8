from __future__ import annotations

import threading

from tessera.client.lock._errors import StaleTokenError


class FencedResource:
    """The guard a resource puts in front of writes to reject stale lock holders.

    Every write presents the fencing token of the grant its writer holds. A token smaller than
    the largest one seen so far belongs to a holder whose lock has since been granted to someone
    else (its session expired while it was paused, for example): the write is rejected. Equal
    tokens pass, so one holder may write many times.

    Concurrency: safe from any number of threads and tasks.

    Example::

        resource = FencedResource()
        resource.admit(held.token)  # raises StaleTokenError for a stale holder
        write(...)

    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._highest = 0

    @property
    def highest(self) -> int:
        """The largest token admitted so far (0 before the first)."""
        with self._mutex:
            return self._highest

    def admit(self, token: int) -> None:
        """Admit a write carrying `token`, remembering it if it is the largest so far.

        Raises:
            StaleTokenError: `token` is smaller than a token admitted before.

        """
        with self._mutex:
            if token < self._highest:
                raise StaleTokenError(token, self._highest)
            self._highest = token
