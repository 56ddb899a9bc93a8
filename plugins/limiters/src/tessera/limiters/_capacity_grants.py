from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tessera.core.plugins import LimitDecision, QuotaGrant, Rate
from tessera.limiters._script import (
    GRANT,
    RETURN,
    capacity,
    given_back,
    integers,
    returned_units,
    seconds,
    standard_arguments,
    wanted_units,
)


class CapacityGrants:
    """Quota grants of the algorithms whose script takes a capacity (buckets, GCRA).

    Their scripts take `limit, period_us, units, capacity, mode`: mode `grant` takes up to
    `units` and answers `{allowed, units left, retry_us, reset_us, granted}`; mode `return`
    gives `units` back (never beyond what the state can take back) and answers
    `{units given back, units left}`. Their grants never expire on their own (`valid_s` is
    `inf`) and carry an empty stamp.
    """

    def grant_capacity(self, rate: Rate) -> int:
        """Validate the rate's bucket extensions and return the capacity the script gets.

        The burst, or `limit` when 0 (`tessera.limiters._script.capacity`); an algorithm
        without a burst overrides it to reject one.

        Raises:
            ValidationError: The burst or alignment is not one the algorithm takes.

        """
        return capacity(rate)

    def grant_arguments(self, rate: Rate, wanted: int) -> Sequence[int | float | str]:
        """Encode a grant of up to `wanted` units (ValidationError when out of range)."""
        size = self.grant_capacity(rate)
        return (*standard_arguments(rate, wanted_units(wanted)), size, GRANT)

    def grant(self, rate: Rate, wanted: int, reply: Any) -> QuotaGrant:
        """Decode `{allowed, units left, retry_us, reset_us, granted}`."""
        _, remaining, retry_us, _, granted = integers(reply, 5)
        return QuotaGrant(
            granted=granted,
            limit=rate.limit,
            remaining=max(remaining, 0),
            retry_after_s=float("inf") if retry_us < 0 else seconds(retry_us),
            valid_s=float("inf"),
            stamp="",
        )

    def return_arguments(self, rate: Rate, stamp: str, unused: int) -> Sequence[int | float | str]:
        """Encode a give-back of `unused` units (the stamp of such a grant is empty)."""
        _, unused = returned_units(stamp, unused)
        return (*standard_arguments(rate, unused), self.grant_capacity(rate), RETURN)

    def returned(self, rate: Rate, reply: Any) -> LimitDecision:
        """Decode `{units given back, units left}`."""
        return given_back(rate, reply)
