"""Conformance kit of the `tessera.limiters` family: exact admitted counts on a real Redis.

Every check evaluates a limiter through `tessera.limiters.LimitEvaluator` (the way the rate-limit
service runs it) on fresh keys and asserts the counts the `Limiter` contract and the algorithm's
documented semantics fix. Point it at a plugin from the plugin's own tests::

    from tessera.testing.conformance.limiters import LIMITER_CHECKS, LimiterSubject

    @pytest.mark.parametrize("check", LIMITER_CHECKS, ids=lambda c: c.__name__)
    async def test_conformance(check, redis_server):
        client = connect_redis(redis_server.url)
        await check(LimiterSubject(MyLimiter(), client, counts_denied=False))

`counts_denied` says whether the algorithm counts denied requests (fixed windows do, as
envoyproxy/ratelimit does). Algorithms with more semantics run their own checks too:
`PACING_CHECKS` for shaping algorithms that set `delay_s` (leaky bucket), `LEASE_CHECKS` for
`ReleasingLimiter`s (concurrency, whose `period` is the lease duration), `GRANT_CHECKS` for
`GrantingLimiter`s (quota leases), `WINDOW_GRANT_CHECKS` for granting algorithms with windows,
`WEIGHTED_WINDOW_GRANT_CHECKS` for granting algorithms with weighted windows (sliding window),
`BURST_CHECKS` for bucket algorithms that take `Rate.burst` (token bucket, GCRA) and
`CALENDAR_CHECKS` for windowed algorithms that take `Rate.align == "calendar"` (fixed window).

The checks use long periods, so no window or refill interval passes
during a burst, except `check_recovers_after_retry_after`, which waits for `retry_after_s`.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from tessera.core import ValidationError
from tessera.core.plugins import (
    GrantingLimiter,
    LimitDecision,
    Limiter,
    QuotaGrant,
    Rate,
    ReleasingLimiter,
)
from tessera.limiters import Evaluation, LimitEvaluator

#: A rate no burst in a test can outlast.
_HOUR = 3600.0


@dataclass(frozen=True)
class LimiterSubject:
    """The limiter under test and where it runs.

    Attributes:
        limiter: The algorithm.
        redis: A client of a real Redis; the checks write keys under `conformance:`.
        counts_denied: Whether the algorithm's documented semantics count denied requests.

    """

    limiter: Limiter
    redis: Redis
    counts_denied: bool = False

    def key(self) -> str:
        """Return a key no other check uses, hash-tagged like the service's keys."""
        return f"conformance:{{{uuid.uuid4().hex}}}"

    async def take(self, key: str, rate: Rate, cost: int = 1) -> LimitDecision:
        """Evaluate one key once."""
        [decision] = await LimitEvaluator(self.redis).evaluate(
            [Evaluation(self.limiter, key, rate, cost)]
        )
        return decision

    async def release(self, key: str, rate: Rate, lease: str) -> LimitDecision:
        """Release one lease of a key."""
        [decision] = await LimitEvaluator(self.redis).evaluate(
            [Evaluation(self.limiter, key, rate, 0, lease=lease)]
        )
        return decision

    def granting(self) -> GrantingLimiter:
        """Return the limiter as a `GrantingLimiter` (the grant checks need one)."""
        assert isinstance(self.limiter, GrantingLimiter), self.limiter
        return self.limiter

    async def grant(self, key: str, rate: Rate, wanted: int) -> QuotaGrant:
        """Take up to `wanted` units of a key at once."""
        return await LimitEvaluator(self.redis).grant(self.granting(), key, rate, wanted)

    async def give_back(
        self, key: str, rate: Rate, grant: QuotaGrant, unused: int
    ) -> LimitDecision:
        """Give `unused` units of `grant` back."""
        evaluator = LimitEvaluator(self.redis)
        return await evaluator.give_back(self.granting(), key, rate, grant.stamp, unused)


async def check_burst_admits_exactly_limit(subject: LimiterSubject) -> None:
    """Check that a burst of unit requests on a fresh key admits exactly the first `limit`."""
    key, rate = subject.key(), Rate(limit=5, period_s=_HOUR)
    decisions = [await subject.take(key, rate) for _ in range(8)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3, decisions
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0], decisions
    assert all(d.limit == 5 for d in decisions)
    assert all(d.retry_after_s > 0 for d in decisions[5:]), decisions
    assert all(d.retry_after_s == 0 for d in decisions[:5]), decisions


async def check_concurrent_callers_admit_exactly_limit(subject: LimiterSubject) -> None:
    """Check that concurrent callers admit exactly `limit` together."""
    key, rate = subject.key(), Rate(limit=10, period_s=_HOUR)
    decisions = await asyncio.gather(*(subject.take(key, rate) for _ in range(40)))
    assert sum(d.allowed for d in decisions) == 10


async def check_one_round_trip_evaluates_a_batch(subject: LimiterSubject) -> None:
    """Check that one `evaluate` call decides many keys, independently and in order."""
    evaluator = LimitEvaluator(subject.redis)
    first, second = subject.key(), subject.key()
    rate = Rate(limit=2, period_s=_HOUR)
    batch = [Evaluation(subject.limiter, first, rate, 1)] * 3 + [
        Evaluation(subject.limiter, second, rate, 2)
    ]
    decisions = await evaluator.evaluate(batch)
    assert [d.allowed for d in decisions] == [True, True, False, True], decisions


async def check_peek_counts_nothing(subject: LimiterSubject) -> None:
    """Check that a peek (cost 0) reports the state and leaves it unchanged."""
    key, rate = subject.key(), Rate(limit=3, period_s=_HOUR)
    for _ in range(5):
        peek = await subject.take(key, rate, cost=0)
        assert peek.allowed, peek
        assert peek.remaining == 3, peek
    decisions = [await subject.take(key, rate) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False], decisions
    exhausted = await subject.take(key, rate, cost=0)
    assert not exhausted.allowed, exhausted
    assert exhausted.remaining == 0, exhausted


async def check_cost_is_counted_in_units(subject: LimiterSubject) -> None:
    """Check that a cost takes that many units, and one above what is left is denied."""
    key, rate = subject.key(), Rate(limit=5, period_s=_HOUR)
    assert (await subject.take(key, rate, cost=3)).remaining == 2
    too_big = await subject.take(key, rate, cost=3)
    assert not too_big.allowed, too_big
    after = await subject.take(key, rate, cost=1)
    # Counting the denied 3 units leaves nothing; not counting them leaves 2, so 1 fits.
    assert after.allowed is not subject.counts_denied, after


async def check_zero_limit_denies_everything(subject: LimiterSubject) -> None:
    """Check that a limit of 0 denies every request."""
    key, rate = subject.key(), Rate(limit=0, period_s=_HOUR)
    decisions = [await subject.take(key, rate) for _ in range(3)]
    assert not any(d.allowed for d in decisions), decisions


async def check_deleting_the_key_resets_it(subject: LimiterSubject) -> None:
    """Check that deleting the key (which holds its whole state) gives the allowance back."""
    key, rate = subject.key(), Rate(limit=2, period_s=_HOUR)
    for _ in range(3):
        await subject.take(key, rate)
    assert await LimitEvaluator(subject.redis).reset([key]) == 1
    decisions = [await subject.take(key, rate) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False], decisions


async def check_recovers_after_retry_after(subject: LimiterSubject) -> None:
    """Check that a denied request is admitted again once its `retry_after_s` has passed."""
    key, rate = subject.key(), Rate(limit=2, period_s=0.5)
    denied = None
    # A window boundary may fall inside the burst; a second full window cannot in 8 quick calls.
    for _ in range(8):
        decision = await subject.take(key, rate)
        if not decision.allowed:
            denied = decision
            break
    assert denied is not None, "a limit of 2 per 0.5 s admitted 8 requests in a row"
    assert 0 < denied.retry_after_s <= 1.0, denied
    await asyncio.sleep(denied.retry_after_s + 0.05)
    assert (await subject.take(key, rate)).allowed


async def check_rejects_bad_arguments(subject: LimiterSubject) -> None:
    """Check that bad limits, periods and costs raise ValidationError naming the field."""
    cases = [
        (Rate(limit=-1, period_s=1.0), 1, "rate.limit"),
        (Rate(limit=1, period_s=0.0), 1, "rate.period_s"),
        (Rate(limit=1, period_s=1.0), -1, "cost"),
    ]
    for rate, cost, field in cases:
        with pytest.raises(ValidationError) as raised:
            subject.limiter.arguments(rate, cost)
        assert [v.field for v in raised.value.violations] == [field], raised.value


#: Every check of the kit, for `pytest.mark.parametrize`.
LIMITER_CHECKS: tuple[Callable[[LimiterSubject], Awaitable[None]], ...] = (
    check_burst_admits_exactly_limit,
    check_concurrent_callers_admit_exactly_limit,
    check_one_round_trip_evaluates_a_batch,
    check_peek_counts_nothing,
    check_cost_is_counted_in_units,
    check_zero_limit_denies_everything,
    check_deleting_the_key_resets_it,
    check_recovers_after_retry_after,
    check_rejects_bad_arguments,
)


async def check_burst_is_paced_by_delay(subject: LimiterSubject) -> None:
    """Check that admitted units of a burst are told to wait one emission interval each."""
    key, rate = subject.key(), Rate(limit=4, period_s=40.0)
    decisions = [await subject.take(key, rate) for _ in range(5)]
    assert [d.allowed for d in decisions] == [True] * 4 + [False], decisions
    # 10 s per unit; the burst itself lasts milliseconds, which the water leaks meanwhile.
    for index, decision in enumerate(decisions[:4]):
        assert 10.0 * index - 0.5 <= decision.delay_s <= 10.0 * index, decisions
    assert decisions[4].delay_s == 0, decisions
    assert 9.0 < decisions[4].retry_after_s <= 10.0, decisions


async def check_peek_and_cost_pacing(subject: LimiterSubject) -> None:
    """Check that a peek has no delay, and a request of cost n waits behind n earlier units."""
    key, rate = subject.key(), Rate(limit=10, period_s=100.0)
    assert (await subject.take(key, rate, cost=3)).delay_s == 0
    peek = await subject.take(key, rate, cost=0)
    assert peek.allowed, peek
    assert peek.delay_s == 0, peek
    assert peek.remaining == 7, peek
    after = await subject.take(key, rate)
    assert 29.5 <= after.delay_s <= 30.0, after


async def check_release_frees_units(subject: LimiterSubject) -> None:
    """Check that releasing a lease frees its units at once, and only once."""
    key, rate = subject.key(), Rate(limit=2, period_s=_HOUR)
    first, second, third = [await subject.take(key, rate) for _ in range(3)]
    assert first.allowed, (first, second, third)
    assert second.allowed, (first, second, third)
    assert not third.allowed, (first, second, third)
    assert first.lease, (first, second)
    assert second.lease, (first, second)
    assert first.lease != second.lease, (first, second)
    assert not third.lease, third
    released = await subject.release(key, rate, first.lease)
    assert released.allowed, released
    assert released.remaining == 1, released
    again = await subject.take(key, rate)
    assert again.allowed, again
    assert again.remaining == 0, again
    twice = await subject.release(key, rate, first.lease)
    assert not twice.allowed, twice
    assert twice.remaining == 0, twice


async def check_release_gives_back_every_unit_of_a_cost(subject: LimiterSubject) -> None:
    """Check that a lease of cost n holds n units and its release frees all of them."""
    key, rate = subject.key(), Rate(limit=5, period_s=_HOUR)
    big = await subject.take(key, rate, cost=4)
    assert big.allowed, big
    assert big.remaining == 1, big
    assert not (await subject.take(key, rate, cost=2)).allowed
    assert (await subject.release(key, rate, big.lease)).remaining == 5
    assert (await subject.take(key, rate, cost=5)).allowed


async def check_lease_expires_after_period(subject: LimiterSubject) -> None:
    """Check that an unreleased lease stops holding its units once `period` has passed."""
    key, rate = subject.key(), Rate(limit=1, period_s=0.3)
    held = await subject.take(key, rate)
    denied = await subject.take(key, rate)
    assert held.allowed, (held, denied)
    assert not denied.allowed, (held, denied)
    assert 0 < denied.retry_after_s <= 0.3, denied
    await asyncio.sleep(denied.retry_after_s + 0.05)
    assert (await subject.take(key, rate)).allowed
    # The expired lease is no longer held: releasing it frees nothing.
    late = await subject.release(key, rate, held.lease)
    assert not late.allowed, late
    assert late.remaining == 0, late


async def check_in_flight_never_exceeds_limit(subject: LimiterSubject) -> None:
    """Check that concurrent acquire/release cycles never hold more than `limit` units."""
    key, rate = subject.key(), Rate(limit=3, period_s=_HOUR)
    in_flight = peak = admitted = 0

    async def work() -> None:
        nonlocal in_flight, peak, admitted
        for _ in range(5):
            decision = await subject.take(key, rate)
            if decision.allowed:
                admitted += 1
                in_flight += 1
                peak = max(peak, in_flight)
                await asyncio.sleep(0.005)
                in_flight -= 1
                assert (await subject.release(key, rate, decision.lease)).allowed
            else:
                await asyncio.sleep(0.002)

    await asyncio.gather(*(work() for _ in range(8)))
    assert peak <= 3 < admitted, (peak, admitted)
    assert (await subject.take(key, rate, cost=0)).remaining == 3


async def check_rejects_bad_leases(subject: LimiterSubject) -> None:
    """Check that a lease the algorithm never handed out is a ValidationError on `lease`."""
    releasing = subject.limiter
    assert isinstance(releasing, ReleasingLimiter), releasing
    for lease in ("", "nope", "12", "12.0", "1.2.3"):
        with pytest.raises(ValidationError) as raised:
            releasing.release_arguments(Rate(limit=1, period_s=1.0), lease)
        assert [v.field for v in raised.value.violations] == ["lease"], lease


#: Checks of shaping algorithms, which tell admitted requests how long to wait (`delay_s`).
PACING_CHECKS: tuple[Callable[[LimiterSubject], Awaitable[None]], ...] = (
    check_burst_is_paced_by_delay,
    check_peek_and_cost_pacing,
)

#: Checks of `ReleasingLimiter`s, whose admissions hold leases (`period` is their duration).
LEASE_CHECKS: tuple[Callable[[LimiterSubject], Awaitable[None]], ...] = (
    check_release_frees_units,
    check_release_gives_back_every_unit_of_a_cost,
    check_lease_expires_after_period,
    check_in_flight_never_exceeds_limit,
    check_rejects_bad_leases,
)


async def check_grant_takes_up_to_what_is_left(subject: LimiterSubject) -> None:
    """Check that grants take what they ask while it lasts, then the rest, then nothing."""
    key, rate = subject.key(), Rate(limit=10, period_s=_HOUR)
    first = await subject.grant(key, rate, 4)
    assert (first.granted, first.remaining, first.retry_after_s) == (4, 6, 0), first
    assert first.valid_s > 0, first
    second = await subject.grant(key, rate, 10)
    assert (second.granted, second.remaining) == (6, 0), second
    empty = await subject.grant(key, rate, 1)
    assert (empty.granted, empty.remaining) == (0, 0), empty
    assert empty.retry_after_s > 0, empty
    # Granted units are counted like admitted requests: nothing is left for a check either.
    assert not (await subject.take(key, rate)).allowed


async def check_grant_never_counts_refused_units(subject: LimiterSubject) -> None:
    """Check that a grant counts what it grants, whatever it asked (fixed windows included)."""
    key, rate = subject.key(), Rate(limit=5, period_s=_HOUR)
    assert [await subject.take(key, rate) for _ in range(2)][-1].remaining == 3
    assert (await subject.grant(key, rate, 100)).granted == 3
    assert (await subject.grant(key, rate, 100)).granted == 0
    peek = await subject.take(key, rate, cost=0)
    assert peek.remaining == 0, peek


async def check_concurrent_grants_share_the_limit_exactly(subject: LimiterSubject) -> None:
    """Check that concurrent grants hand out exactly `limit` units together, never more."""
    key, rate = subject.key(), Rate(limit=25, period_s=_HOUR)
    grants = await asyncio.gather(*(subject.grant(key, rate, 3) for _ in range(20)))
    assert sum(g.granted for g in grants) == 25, grants
    # Each grant takes min(3, what is left): eight of 3, one of 1, the rest nothing.
    assert sorted(g.granted for g in grants) == [0] * 11 + [1] + [3] * 8, grants


async def check_give_back_returns_unused_units(subject: LimiterSubject) -> None:
    """Check that unused units given back are available again, once."""
    key, rate = subject.key(), Rate(limit=10, period_s=_HOUR)
    grant = await subject.grant(key, rate, 8)
    assert grant.granted == 8, grant
    back = await subject.give_back(key, rate, grant, 5)
    assert back.allowed, back
    assert back.remaining == 7, back
    decisions = [await subject.take(key, rate) for _ in range(8)]
    assert [d.allowed for d in decisions] == [True] * 7 + [False], decisions
    # Giving back nothing gives nothing back.
    assert not (await subject.give_back(key, rate, grant, 0)).allowed


async def check_rejects_bad_grants(subject: LimiterSubject) -> None:
    """Check that bad grant sizes, stamps and unused counts name their field."""
    granting = subject.granting()
    rate = Rate(limit=10, period_s=1.0)
    for wanted in (0, -1):
        with pytest.raises(ValidationError) as raised:
            granting.grant_arguments(rate, wanted)
        assert [v.field for v in raised.value.violations] == ["tokens"], wanted
    with pytest.raises(ValidationError) as raised:
        granting.return_arguments(rate, "not a stamp", 1)
    assert [v.field for v in raised.value.violations] == ["lease"]
    with pytest.raises(ValidationError) as raised:
        granting.return_arguments(rate, "", -1)
    assert [v.field for v in raised.value.violations] == ["unused"]


async def check_grant_is_valid_until_its_window_ends(subject: LimiterSubject) -> None:
    """Check that a window's grant is valid until the window ends and gives back nothing after."""
    key, rate = subject.key(), Rate(limit=100, period_s=0.5)
    grant = await subject.grant(key, rate, 10)
    assert grant.granted == 10, grant
    assert 0 < grant.valid_s <= 0.5, grant
    await asyncio.sleep(grant.valid_s + 0.05)
    # The units counted in a window that is over; giving them back must not credit this one.
    late = await subject.give_back(key, rate, grant, 10)
    assert not late.allowed, late
    assert late.remaining == 100, late


async def check_sliding_grant_gives_back_while_its_window_weighs(subject: LimiterSubject) -> None:
    """Check a weighted window's grant: it ends with its window, and gives back what weighs.

    Unused units given back after the boundary leave the previous window's weight; two windows
    later nothing is given back.
    """
    key, rate = subject.key(), Rate(limit=100, period_s=2.0)
    grant = await subject.grant(key, rate, 100)
    assert grant.granted == 100, grant
    assert 0 < grant.valid_s <= 2.0, grant
    await asyncio.sleep(grant.valid_s + 0.02)
    # Next window: the 100 units weigh (1 - elapsed / period) of themselves.
    before = await subject.take(key, rate, cost=0)
    back = await subject.give_back(key, rate, grant, 60)
    assert back.allowed, back
    # 100 - floor(40 * w) with w <= 1: at least the 60 units given back are free again, and
    # exactly that many fit in one request (the estimate only falls as time passes).
    assert back.remaining >= 60, back
    assert back.remaining > before.remaining, (before, back)
    assert (await subject.take(key, rate, cost=back.remaining)).allowed
    # Giving back more than the window still counts gives back only what it counts.
    rest = await subject.give_back(key, rate, grant, 100)
    assert rest.allowed, rest
    # Two windows later the grant's window weighs nothing: nothing to give back.
    late_key = subject.key()
    late = await subject.grant(late_key, Rate(limit=100, period_s=0.5), 10)
    assert late.granted == 10, late
    await asyncio.sleep(late.valid_s + 0.55)
    gone = await subject.give_back(late_key, Rate(limit=100, period_s=0.5), late, 10)
    assert not gone.allowed, gone
    assert gone.remaining == 100, gone


#: Checks of `GrantingLimiter`s (quota leases).
GRANT_CHECKS: tuple[Callable[[LimiterSubject], Awaitable[None]], ...] = (
    check_grant_takes_up_to_what_is_left,
    check_grant_never_counts_refused_units,
    check_concurrent_grants_share_the_limit_exactly,
    check_give_back_returns_unused_units,
    check_rejects_bad_grants,
)

#: Checks of `GrantingLimiter`s with windows, whose grants end with the window.
WINDOW_GRANT_CHECKS: tuple[Callable[[LimiterSubject], Awaitable[None]], ...] = (
    check_grant_is_valid_until_its_window_ends,
)

#: Checks of `GrantingLimiter`s with weighted windows (sliding window), whose grants end with
#: their window and whose unused units come back while that window still weighs.
WEIGHTED_WINDOW_GRANT_CHECKS: tuple[Callable[[LimiterSubject], Awaitable[None]], ...] = (
    check_sliding_grant_gives_back_while_its_window_weighs,
)


async def check_burst_sets_the_bucket_size(subject: LimiterSubject) -> None:
    """Check that a fresh key admits exactly `burst` units at once, above or below `limit`."""
    for limit, burst in ((2, 5), (100, 1)):
        key, rate = subject.key(), Rate(limit=limit, period_s=_HOUR * 2, burst=burst)
        decisions = [await subject.take(key, rate) for _ in range(burst + 2)]
        assert [d.allowed for d in decisions] == [True] * burst + [False] * 2, decisions
        assert [d.remaining for d in decisions[:burst]] == list(range(burst - 1, -1, -1))
        interval = rate.period_s / limit
        # The next unit is one emission interval away (less the milliseconds the burst took).
        assert interval - 5 < decisions[-1].retry_after_s <= interval, decisions
        assert all(d.limit == limit for d in decisions), decisions


async def check_burst_refills_at_the_limit_rate(subject: LimiterSubject) -> None:
    """Check that after a burst, units come back at `limit / period`, not at the burst's size."""
    key, rate = subject.key(), Rate(limit=4, period_s=1.0, burst=2)
    decisions = [await subject.take(key, rate) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False], decisions
    assert 0 < decisions[2].retry_after_s <= 0.25, decisions
    await asyncio.sleep(decisions[2].retry_after_s + 0.02)
    assert (await subject.take(key, rate)).allowed
    # A cost above the burst can never fit, whatever the limit.
    too_big = await subject.take(subject.key(), rate, cost=3)
    assert not too_big.allowed, too_big
    assert math.isinf(too_big.retry_after_s), too_big


async def check_rejects_bad_bursts(subject: LimiterSubject) -> None:
    """Check that a negative burst names `rate.burst` and calendar windows `rate.align`."""
    with pytest.raises(ValidationError) as raised:
        subject.limiter.arguments(Rate(limit=1, period_s=1.0, burst=-1), 1)
    assert [v.field for v in raised.value.violations] == ["rate.burst"]
    with pytest.raises(ValidationError) as raised:
        subject.limiter.arguments(Rate(limit=1, period_s=86400.0, align="calendar"), 1)
    assert [v.field for v in raised.value.violations] == ["rate.align"]


#: Checks of bucket algorithms that take `Rate.burst`.
BURST_CHECKS: tuple[Callable[[LimiterSubject], Awaitable[None]], ...] = (
    check_burst_sets_the_bucket_size,
    check_burst_refills_at_the_limit_rate,
    check_rejects_bad_bursts,
)

_DAY_S = 86_400.0


def _next_boundary(now: datetime.datetime, period_s: float) -> datetime.datetime:
    # The next calendar window start after `now` (UTC), computed with the standard library.
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period_s == 7 * _DAY_S:
        return midnight + datetime.timedelta(days=7 - now.weekday())
    if period_s == 30 * _DAY_S:
        year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
        return midnight.replace(year=year, month=month, day=1)
    if period_s == 365 * _DAY_S:
        return midnight.replace(year=now.year + 1, month=1, day=1)
    return midnight + datetime.timedelta(days=1)


async def check_calendar_windows_end_at_utc_boundaries(subject: LimiterSubject) -> None:
    """Check that day, week, month and year windows end at midnight UTC, Monday, 1st, Jan 1st."""
    for period_s in (_DAY_S, 7 * _DAY_S, 30 * _DAY_S, 365 * _DAY_S):
        key, rate = subject.key(), Rate(limit=3, period_s=period_s, align="calendar")
        seconds, microseconds = await subject.redis.time()
        decisions = [await subject.take(key, rate) for _ in range(5)]
        # Exactly `limit` per window; every hit counted, as in epoch-aligned windows.
        assert [d.allowed for d in decisions] == [True] * 3 + [False] * 2, decisions
        now = datetime.datetime.fromtimestamp(seconds + microseconds / 1e6, datetime.UTC)
        boundary = _next_boundary(now, period_s).timestamp()
        window_end = seconds + microseconds / 1e6 + decisions[0].reset_after_s
        assert abs(window_end - boundary) < 1.0, (period_s, now, decisions[0])
        assert abs(decisions[-1].retry_after_s - decisions[0].reset_after_s) < 1.0, decisions
        # The counter lives exactly until the boundary.
        expires_ms = await subject.redis.pttl(key)
        assert abs(seconds + expires_ms / 1000 - boundary) < 2.0, (period_s, expires_ms)


async def check_calendar_rejects_other_periods(subject: LimiterSubject) -> None:
    """Check that calendar windows need a week, a month, a year or a divisor of a day."""
    with pytest.raises(ValidationError) as raised:
        subject.limiter.arguments(Rate(limit=1, period_s=2 * _DAY_S, align="calendar"), 1)
    assert [v.field for v in raised.value.violations] == ["rate.align"]
    # A divisor of a day is cut at midnight UTC either way.
    key = subject.key()
    aligned = await subject.take(key, Rate(limit=1, period_s=3600.0, align="calendar"))
    epoch = await subject.take(subject.key(), Rate(limit=1, period_s=3600.0))
    assert abs(aligned.reset_after_s - epoch.reset_after_s) < 1.0, (aligned, epoch)


#: Checks of windowed algorithms that take `Rate.align == "calendar"`.
CALENDAR_CHECKS: tuple[Callable[[LimiterSubject], Awaitable[None]], ...] = (
    check_calendar_windows_end_at_utc_boundaries,
    check_calendar_rejects_other_periods,
)
