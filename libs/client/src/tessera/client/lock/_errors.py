from __future__ import annotations

from tessera.core import FailedPreconditionError


class StaleTokenError(FailedPreconditionError):
    """A write carried a fencing token older than one the resource has already seen.

    Attributes:
        token: The rejected token.
        highest: The largest token the resource has seen.

    """

    def __init__(self, token: int, highest: int) -> None:
        super().__init__(f"fencing token {token} is stale: the resource has seen {highest}")
        self.token = token
        self.highest = highest
