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
`ReleasingLimiter`s (concurrency, whose `period` is the lease duration).

The checks use long periods, so no window or refill interval passes
during a burst, except `check_recovers_after_retry_after`, which waits for `retry_after_s`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from tessera.core import ValidationError
from tessera.core.plugins import LimitDecision, Limiter, Rate, ReleasingLimiter
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
