from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

#: How windows are cut: `epoch` (every `period_s` from the Unix epoch) or `calendar` (weeks from
#: Monday, months and years as the UTC calendar has them).
Alignment = Literal["epoch", "calendar"]


@dataclass(frozen=True, slots=True)
class Rate:
    """How much traffic a key may have: `limit` units per `period_s` seconds.

    Attributes:
        limit: Units allowed per period, >= 0 (0 denies everything).
        period_s: Length of the period in seconds, > 0.
        burst: For algorithms with a bucket (token bucket, GCRA): how many units it holds, so
            the largest burst, while it refills at `limit / period_s`; 0 means `limit`. An
            algorithm without a bucket rejects any other value.
        align: For windowed algorithms (fixed window): `calendar` cuts windows of a week at
            Monday 00:00 UTC, of a month (30 days) at the 1st and of a year (365 days) at
            January 1st; windows of a day or a divisor of it are the same either way. Other
            algorithms reject `calendar`.

    """

    limit: int
    period_s: float
    burst: int = 0
    align: Alignment = "epoch"


class LimitDecision(NamedTuple):
    """The outcome of one limit evaluation for one key (immutable).

    A named tuple rather than a frozen dataclass: a service builds one per descriptor of every
    request, and a frozen dataclass's `__init__` costs several times a tuple's.

    Attributes:
        allowed: Whether the units fit (and, unless the algorithm documents otherwise, were
            counted).
        limit: The `Rate.limit` the decision was made against.
        remaining: Units still available right after this decision, >= 0.
        retry_after_s: When denied, the earliest time in seconds after which the same request may
            be allowed; 0 when allowed.
        reset_after_s: Seconds until the key is back to its full allowance (fixed windows: until
            the window ends) if no more traffic arrives.
        delay_s: When allowed by a shaping algorithm (leaky bucket), how long the caller should
            wait before going on so that admitted traffic leaves at the configured rate; else 0.
        lease: When allowed by an algorithm that holds units until they are given back
            (concurrency), the identifier to release them with (`ReleasingLimiter`); else "".

    """

    allowed: bool
    limit: int
    remaining: int
    retry_after_s: float
    reset_after_s: float
    delay_s: float = 0.0
    lease: str = ""


@runtime_checkable
class Limiter(Protocol):
    """An algorithm that decides whether traffic for a key fits a rate.

    Entry-point group `tessera.limiters`.

    Factory: the entry point names a class or callable that takes no argument. A limiter holds no
    connection and no state: it is a Lua script plus the encoding of its arguments and the decoding
    of its reply, so that the caller can evaluate every descriptor of one request, whatever their
    algorithms, in ONE Redis round trip (see `tessera.limiters.LimitEvaluator`).

    Script contract (`script()`):

    - `KEYS[1]` is the only key the script reads or writes; the whole state of the limited thing
      lives there, so deleting it resets the key, and a Redis Cluster slot is known from it (the
      caller puts a hash tag in it).
    - `ARGV` is what `arguments(rate, cost)` returned (no value may contain the ASCII unit or
      record separators U+001F and U+001E, which join them in batches).
    - The script may run as the body of a Lua function, once per key of a batch, with `KEYS`
      and `ARGV` as its parameters: it ends with `return`, and defines no global.
    - Time comes from the Redis server (`TIME`), never from the caller, so replicas on machines
      with skewed clocks agree.
    - The check and the count happen inside the script, hence atomically with respect to every
      other caller of any process.
    - `cost == 0` is a peek: the script reports the state and writes nothing.
    - The reply is a flat array of integers that only `decision` interprets.

    Concurrency: the three methods are pure and may be called from any task or thread.
    """

    def script(self) -> str:
        """Return the Lua source evaluated for each key (the same text on every call)."""
        ...

    def arguments(self, rate: Rate, cost: int) -> Sequence[int | float | str]:
        """Encode the `ARGV` of one evaluation.

        Args:
            rate: The allowance of the key; the same key is always evaluated with the same rate
                unless the configuration changed.
            cost: Units this request takes, >= 0 (0 peeks).

        Raises:
            ValidationError: `rate` or `cost` is out of range for this algorithm.

        """
        ...

    def decision(self, rate: Rate, cost: int, reply: Any) -> LimitDecision:
        """Decode the script's reply for the evaluation encoded with the same `rate` and `cost`.

        Raises:
            BackendError: The reply does not have the documented shape (not retryable).

        """
        ...


@runtime_checkable
class ReleasingLimiter(Limiter, Protocol):
    """A `Limiter` whose admitted units stay taken until released or until their lease expires.

    An admitting decision carries a `lease`; evaluating the same key with
    `release_arguments(rate, lease)` as `ARGV` (same script, same one-round-trip batching) gives
    the units back. The decision of a release is `allowed` iff the lease was still held (so a
    second release, or one after expiry, is not), with `remaining` counted after the release.

    Concurrency: pure, like `Limiter`.
    """

    def release_arguments(self, rate: Rate, lease: str) -> Sequence[int | float | str]:
        """Encode the `ARGV` that releases `lease` on its key.

        Raises:
            ValidationError: `lease` is not one this algorithm hands out (field `lease`).

        """
        ...


@dataclass(frozen=True, slots=True)
class QuotaGrant:
    """Units handed to one client at once, to spend by itself (a quota lease).

    The units are counted in the key's state when granted, exactly as if `granted` requests of
    one unit had been admitted then; the client decides locally while it spends them.

    Attributes:
        granted: Units granted, 0 to the number asked for (fewer when fewer are left).
        limit: The `Rate.limit` of the grant.
        remaining: Units still available to others right after the grant.
        retry_after_s: When nothing was granted, the earliest time a unit may be; else 0.
        valid_s: How long the units may be spent, from the moment the Redis server read its
            clock: until the window ends for windowed algorithms (after that they count in a
            window that is over), `inf` for buckets (the caller bounds it).
        stamp: What `GrantingLimiter.return_arguments` needs to give units back (the window
            the units were counted in), opaque to the caller.

    """

    granted: int
    limit: int
    remaining: int
    retry_after_s: float
    valid_s: float
    stamp: str


@runtime_checkable
class GrantingLimiter(Limiter, Protocol):
    """A `Limiter` that can grant several units at once, up to what is left (quota leases).

    Evaluating a key with `grant_arguments(rate, wanted)` as `ARGV` (same script) takes
    `min(wanted, units left)` units atomically and never counts a refused unit (even for
    algorithms that count denied requests); `grant` decodes the reply. Evaluating it with
    `return_arguments(rate, stamp, unused)` gives unused units of a grant back, as far as they
    still count: a bucket takes them back (up to its size), a windowed algorithm only while the
    window they were counted in still weighs (a fixed window until it ends; a sliding window
    also through the next one, as the previous window's weight) and ignores them after.
    `returned` decodes that reply.

    The built-in `fixed_window`, `sliding_window`, `token_bucket`, `gcra` and `leaky_bucket`
    grant; `concurrency` does not (its units are in flight, held by a `ReleasingLimiter` lease,
    not a quota), and the service answers a quota lease on a rule whose algorithm is not a
    `GrantingLimiter` with INVALID_ARGUMENT on `descriptor`.

    Concurrency: pure, like `Limiter`.
    """

    def grant_arguments(self, rate: Rate, wanted: int) -> Sequence[int | float | str]:
        """Encode the `ARGV` that grants up to `wanted` (>= 1) units.

        Raises:
            ValidationError: The rate is out of range, or `wanted` < 1 (field `tokens`).

        """
        ...

    def grant(self, rate: Rate, wanted: int, reply: Any) -> QuotaGrant:
        """Decode the reply of a grant (BackendError when it has another shape)."""
        ...

    def return_arguments(self, rate: Rate, stamp: str, unused: int) -> Sequence[int | float | str]:
        """Encode the `ARGV` that gives back `unused` (>= 0) units of a grant with `stamp`.

        Raises:
            ValidationError: `stamp` is not one this algorithm hands out (field `lease`) or
                `unused` is negative (field `unused`).

        """
        ...

    def returned(self, rate: Rate, reply: Any) -> LimitDecision:
        """Decode a give-back: `allowed` iff units were given back, `remaining` after it."""
        ...
