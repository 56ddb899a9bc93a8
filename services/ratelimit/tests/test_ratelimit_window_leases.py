"""Quota leases on sliding_window and leaky_bucket rules through the real service and Redis."""

import asyncio
import uuid

from tessera.client.ratelimit import QuotaLease, RateLimiter


def unique() -> str:
    return uuid.uuid4().hex[:12]


async def test_ratelimit_lease_on_a_sliding_window_counts_in_its_window_and_gives_back(
    start_ratelimit,
) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        sliding = {"sliding": unique()}  # 5 an hour, weighted windows
        assert await limiter.check("quotas", [sliding])
        grant = await limiter.lease("quotas", sliding, 10, ttl_s=2.0)
        assert (grant.granted, grant.decision.remaining) == (4, 0)
        assert grant.decision.reason == "partly granted (over limit)"
        assert grant.lease.startswith("quota:")
        assert 0 < grant.valid_s <= 2.0  # min(ttl, the time left in the hour's window)
        assert not await limiter.check("quotas", [sliding])  # granted tokens count
        assert (await limiter.lease("quotas", sliding, 1)).granted == 0
        assert await limiter.release("quotas", sliding, grant.lease, unused=3)
        decisions = [await limiter.check("quotas", [sliding]) for _ in range(4)]
        assert [bool(d) for d in decisions] == [True, True, True, False]


async def test_ratelimit_lease_on_a_leaky_bucket_fills_it_and_gives_water_back(
    start_ratelimit,
) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        leaky = {"leaky": unique()}  # 10 an hour, leaking one every 6 minutes
        grant = await limiter.lease("quotas", leaky, 7, ttl_s=1.5)
        assert (grant.granted, grant.decision.remaining, grant.valid_s) == (7, 3, 1.5)
        rest = await limiter.lease("quotas", leaky, 7)
        assert (rest.granted, rest.decision.remaining) == (3, 0)
        assert not await limiter.check("quotas", [leaky])
        assert await limiter.release("quotas", leaky, grant.lease, unused=5)
        assert (await limiter.peek("quotas", [leaky])).decisions[0].remaining == 5


async def test_ratelimit_quota_leases_of_two_clients_share_a_sliding_window_exactly(
    start_ratelimit,
) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        sliding = {"sliding": unique()}  # 5 an hour
        leaky = {"leaky": unique()}  # 10 an hour
        spent = {"sliding": 0, "leaky": 0}

        async def spend(name: str, descriptor: dict[str, str]) -> None:
            async with QuotaLease(limiter, "quotas", descriptor, batch=3, ttl_s=5.0) as quota:
                while await quota.acquire(timeout_s=0.3):
                    spent[name] += 1
                    await asyncio.sleep(0)

        await asyncio.gather(
            *(spend(name, d) for name, d in (("sliding", sliding), ("leaky", leaky)) for _ in "ab")
        )
        assert spent == {"sliding": 5, "leaky": 10}
        assert not await limiter.check("quotas", [sliding])
        assert not await limiter.check("quotas", [leaky])
