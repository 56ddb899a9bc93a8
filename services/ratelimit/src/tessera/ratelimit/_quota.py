from __future__ import annotations

import re

from tessera.core import ValidationError

#: The longest a client may spend a quota lease's tokens: longer would make the documented
#: overshoot of bucket rules (rate x ttl) meaningless.
MAX_LEASE_TTL_S = 60.0
#: The ttl of a Lease request that sets none.
DEFAULT_LEASE_TTL_S = 1.0
#: Most tokens one Lease may ask for.
MAX_LEASE_TOKENS = 1_000_000_000

_PREFIX = "quota:"
_LEASE = re.compile(r"quota:(\d{0,20}):(\d{1,10})")


def quota_lease(stamp: str, granted: int) -> str:
    """Return the lease string of a grant: its limiter's stamp and the tokens granted."""
    return f"{_PREFIX}{stamp}:{granted}" if granted else ""


def is_quota_lease(lease: str) -> bool:
    """Whether `lease` names a quota lease (else it is a concurrency lease)."""
    return lease.startswith(_PREFIX)


def parse_quota_lease(lease: str, unused: int) -> tuple[str, int]:
    """Return the stamp of a quota lease after checking `unused` against what it granted.

    Raises:
        ValidationError: The lease is malformed (field `lease`) or `unused` exceeds the tokens
            it granted (field `unused`).

    """
    found = _LEASE.fullmatch(lease)
    if found is None or int(found[2]) == 0:
        raise ValidationError.for_field("lease", "must be a lease a Lease response handed out")
    if unused > int(found[2]):
        raise ValidationError.for_field("unused", f"must be at most the {found[2]} tokens granted")
    return found[1], unused


def check_lease_request(tokens: int, ttl_s: float) -> None:
    """Validate a Lease's size and ttl, naming the field.

    Raises:
        ValidationError: `tokens` is outside [1, MAX_LEASE_TOKENS] or `ttl` outside
            (0, MAX_LEASE_TTL_S].

    """
    if not 1 <= tokens <= MAX_LEASE_TOKENS:
        raise ValidationError.for_field("tokens", f"must be in [1, {MAX_LEASE_TOKENS}]")
    if not 0 < ttl_s <= MAX_LEASE_TTL_S:
        raise ValidationError.for_field("ttl", f"must be in (0, {MAX_LEASE_TTL_S:g}] seconds")
