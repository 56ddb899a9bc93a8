"""Quota leases, bursts and calendar windows through the real service on real Redis."""

import asyncio
import datetime
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tessera.client.ratelimit import QuotaLease, RateLimiter, SyncRateLimiter
from tessera.core import NotFoundError, ValidationError
from tessera.core.embedded import RedisServer
from tessera.ratelimit import installed_limiters, parse_domain
from tessera.testing import ServerFactory

from .conftest import CONFIGS


def unique() -> str:
    return uuid.uuid4().hex[:12]


async def test_ratelimit_lease_grants_counts_and_takes_back_fixed_window_tokens(
    start_ratelimit,
) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        fixed = {"fixed": unique()}  # 100 an hour
        first = await limiter.lease("quotas", fixed, 30, ttl_s=0.5)
        assert (first.granted, first.decision.remaining, first.decision.reason) == (
            30,
            70,
            "within limit",
        )
        assert first.lease
        assert 0 < first.valid_s <= 0.5
        rest = await limiter.lease("quotas", fixed, 100)
        assert (rest.granted, rest.decision.reason) == (70, "partly granted (over limit)")
        empty = await limiter.lease("quotas", fixed, 1)
        assert (empty.granted, empty.lease, empty.decision.allowed) == (0, "", False)
        assert empty.decision.retry_after_s > 0
        # Granted tokens count like admitted requests.
        assert not await limiter.check("quotas", [fixed])
        assert await limiter.release("quotas", fixed, first.lease, unused=20)
        peek = await limiter.peek("quotas", [fixed])
        assert peek.decisions[0].remaining == 19  # 20 back, less the denied check counted
        assert await limiter.check("quotas", [fixed])


async def test_ratelimit_lease_takes_a_bucket_burst_and_gives_tokens_back(start_ratelimit) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        bucket = {"bucket": unique()}  # 50 an hour, burst 10
        grant = await limiter.lease("quotas", bucket, 50, ttl_s=2.0)
        assert (grant.granted, grant.decision.remaining, grant.valid_s) == (10, 0, 2.0)
        assert await limiter.release("quotas", bucket, grant.lease, unused=4)
        assert (await limiter.peek("quotas", [bucket])).decisions[0].remaining == 4
        gcra = {"gcra": unique()}  # 20 an hour, burst 4
        assert (await limiter.lease("quotas", gcra, 9)).granted == 4


async def test_ratelimit_lease_honours_lists_shadow_mode_and_unlimited_rules(
    start_ratelimit,
) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        everything = [
            ({"nothing": unique()}, 7, "no rule"),
            ({"free": unique()}, 7, "unlimited"),
            ({"vip": "gold"}, 7, "allow list"),
            ({"vip": "blocked"}, 0, "deny list"),
        ]
        for descriptor, granted, reason in everything:
            grant = await limiter.lease("quotas", descriptor, 7)
            assert (grant.granted, grant.lease, grant.decision.reason) == (granted, "", reason)
        shadow = {"shadow": unique()}  # 2 an hour, shadow mode
        grant = await limiter.lease("quotas", shadow, 5)
        assert (grant.granted, grant.decision.reason) == (5, "shadow mode (over limit)")
        # Only what fitted was counted, and only that can come back.
        with pytest.raises(ValidationError) as raised:
            await limiter.release("quotas", shadow, grant.lease, unused=3)
        assert [v.field for v in raised.value.violations] == ["unused"]


@pytest.mark.parametrize(
    ("descriptor", "tokens", "ttl_s", "field"),
    [
        ({"slots": "x"}, 1, 1.0, "descriptor"),  # concurrency: units in flight, not a quota
        ({"breaker": "x"}, 1, 1.0, "descriptor"),
        ({"fixed": "x"}, 0, 1.0, "tokens"),
        ({"fixed": "x"}, 1, 61.0, "ttl"),
        ({"": "x"}, 1, 1.0, "descriptor[0].entries[0].key"),
    ],
)
async def test_ratelimit_lease_rejects_bad_requests_naming_the_field(
    start_ratelimit, descriptor: dict[str, str], tokens: int, ttl_s: float, field: str
) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        with pytest.raises(ValidationError) as raised:
            await limiter.lease("quotas", descriptor, tokens, ttl_s=ttl_s)
        assert [v.field for v in raised.value.violations] == [field]


async def test_ratelimit_lease_errors_for_unknown_domains_and_bad_give_backs(
    start_ratelimit,
) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        with pytest.raises(NotFoundError):
            await limiter.lease("missing", {"fixed": "x"}, 1)
        fixed = {"fixed": unique()}
        grant = await limiter.lease("quotas", fixed, 5)
        for lease, unused, field in (
            ("quota:x:5", 1, "lease"),
            ("quota:1:0", 0, "lease"),
            (grant.lease, 6, "unused"),
        ):
            with pytest.raises(ValidationError) as raised:
                await limiter.release("quotas", fixed, lease, unused=unused)
            assert [v.field for v in raised.value.violations] == [field], lease
        with pytest.raises(ValidationError) as raised:
            await limiter.release("quotas", {"free": "x"}, grant.lease, unused=1)
        assert [v.field for v in raised.value.violations] == ["descriptor"]
        # None of the failed give-backs changed the count.
        assert (await limiter.peek("quotas", [fixed])).decisions[0].remaining == 95


async def test_ratelimit_quota_leases_of_two_clients_never_admit_more_than_the_limit(
    start_ratelimit,
) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        fixed = {"fixed": unique()}  # 100 an hour
        quotas = [QuotaLease(limiter, "quotas", fixed, batch=15, ttl_s=5.0) for _ in range(2)]

        async def spend(quota: QuotaLease) -> int:
            spent = 0
            async with quota:
                while await quota.acquire(timeout_s=0.3):
                    spent += 1
                    if spent % 7 == 0:
                        await asyncio.sleep(0)  # let the other client and renewals run
            return spent

        spent = await asyncio.gather(*(spend(q) for q in quotas))
        assert sum(spent) == 100, spent
        assert all(s > 0 for s in spent), spent
        assert sum(q.granted for q in quotas) == 100
        assert not await limiter.check("quotas", [fixed])


async def test_ratelimit_quota_lease_renews_ahead_and_gives_unused_tokens_back(
    start_ratelimit,
) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        fixed = {"fixed": unique()}
        async with QuotaLease(limiter, "quotas", fixed, batch=20, ttl_s=5.0) as quota:
            assert (quota.granted, quota.available) == (20, 20)
            assert all(quota.try_acquire() for _ in range(16))  # 4 left: under 25 %
            for _ in range(100):
                if quota.granted == 40:
                    break
                await asyncio.sleep(0.01)
            # Renewed in the background while the first grant still pays.
            assert (quota.granted, quota.available) == (40, 4)
            assert quota.try_acquire(4)
            assert quota.try_acquire()  # from the renewed grant, without waiting
            for tokens in (21, 0, -3):  # more than a grant holds; nothing; a refund
                with pytest.raises(ValidationError) as raised:
                    quota.try_acquire(tokens)
                assert [v.field for v in raised.value.violations] == ["tokens"], tokens
        assert quota.given_back == 19
        assert (await limiter.peek("quotas", [fixed])).decisions[0].remaining == 79
        assert not quota.try_acquire()  # closed: nothing is held any more


async def test_ratelimit_quota_lease_expires_its_tokens_after_the_ttl(start_ratelimit) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        bucket = {"bucket": unique()}  # burst 10, refill 50 an hour
        async with QuotaLease(limiter, "quotas", bucket, batch=10, ttl_s=0.2) as quota:
            assert quota.try_acquire(3)
            await asyncio.sleep(0.3)
            assert quota.available == 0
            # The expired grant's 7 tokens went back to the bucket; a renewal takes them again.
            assert not quota.try_acquire()
            assert await quota.acquire(timeout_s=2.0)
            assert quota.granted == 17


async def test_ratelimit_bursts_and_calendar_windows_admit_exact_counts(start_ratelimit) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        bucket, gcra, monthly = {"bucket": unique()}, {"gcra": unique()}, {"monthly": unique()}
        buckets = [await limiter.check("quotas", [bucket]) for _ in range(12)]
        assert [bool(r) for r in buckets] == [True] * 10 + [False] * 2
        assert buckets[0].decisions[0].limit == 50
        assert 60 < buckets[-1].decisions[0].retry_after_s <= 72  # 3600 / 50
        gcras = [await limiter.check("quotas", [gcra]) for _ in range(6)]
        assert [bool(r) for r in gcras] == [True] * 4 + [False] * 2
        months = [await limiter.check("quotas", [monthly]) for _ in range(5)]
        assert [bool(r) for r in months] == [True] * 3 + [False] * 2
        now = datetime.datetime.now(datetime.UTC)
        year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
        first_of_next = datetime.datetime(year, month, 1, tzinfo=datetime.UTC)
        reset_at = now.timestamp() + months[0].decisions[0].reset_after_s
        assert abs(reset_at - first_of_next.timestamp()) < 5


@pytest.mark.parametrize(
    ("name", "field", "description"),
    [
        ("burst_on_fixed_window.yaml", "descriptors[0].rate_limit.burst", "bucket algorithms"),
        (
            "calendar_on_token_bucket.yaml",
            "descriptors[0].rate_limit.align",
            "windowed algorithms",
        ),
        ("unknown_alignment.yaml", "descriptors[0].rate_limit.align", "epoch or calendar"),
        ("zero_burst.yaml", "descriptors[0].rate_limit.burst", "must be in [1,"),
    ],
)
def test_ratelimit_config_rejects_extensions_an_algorithm_lacks(
    name: str, field: str, description: str
) -> None:
    path = CONFIGS / "bad" / name
    with pytest.raises(ValidationError) as raised:
        parse_domain(path.read_text(), algorithms=installed_limiters(), source=f"{name}:")
    violations = raised.value.violations
    assert [v.field for v in violations] == [f"{name}:{field}"], violations
    assert description in violations[0].description


async def test_ratelimit_lease_applies_the_failure_policy_while_redis_is_down(
    start_ratelimit, redis_factory: ServerFactory[RedisServer]
) -> None:
    redis = await asyncio.to_thread(redis_factory)
    async with (
        start_ratelimit(redis_url=redis.url) as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        assert (await limiter.lease("quotas", {"fixed": unique()}, 3)).granted == 3
        await asyncio.to_thread(redis.kill)
        opened = await limiter.lease("quotas", {"fixed": unique()}, 7)  # failure_mode open
        assert (opened.granted, opened.lease) == (7, "")
        assert opened.decision.reason == "redis unavailable (failure_mode open)"
        closed = await limiter.lease("api", {"tenant": unique()}, 7)  # failure_mode closed
        assert (closed.granted, closed.decision.allowed) == (0, False)
        assert closed.decision.reason == "redis unavailable (failure_mode closed)"


async def test_ratelimit_sync_facade_leases_and_gives_back(start_ratelimit) -> None:
    async with start_ratelimit() as (running, _):

        def use() -> tuple[int, bool, int]:
            with SyncRateLimiter(running.server.address) as limiter:
                gcra = {"gcra": unique()}
                grant = limiter.lease("quotas", gcra, 3, ttl_s=0.5)
                back = limiter.release("quotas", gcra, grant.lease, unused=2)
                return grant.granted, back, limiter.peek("quotas", [gcra]).decisions[0].remaining

        assert await asyncio.to_thread(use) == (3, True, 3)


async def test_ratelimit_sync_quota_is_shared_by_threads_without_exceeding_the_limit(
    start_ratelimit,
) -> None:
    async with start_ratelimit() as (running, _):

        def use() -> tuple[list[int], int, int]:
            with SyncRateLimiter(running.server.address) as limiter:
                fixed = {"fixed": unique()}  # 100 an hour
                with limiter.quota("quotas", fixed, batch=12, ttl_s=5.0) as quota:

                    def spend() -> int:
                        # locally from this thread; waiting (on the loop) only when dry
                        spent = 0
                        while quota.try_acquire() or quota.acquire(timeout_s=0.5):
                            spent += 1
                        return spent

                    with ThreadPoolExecutor(4) as pool:
                        spent = list(pool.map(lambda _: spend(), range(4)))
                    granted = quota.granted
                remaining = limiter.peek("quotas", [fixed]).decisions[0].remaining
                return spent, granted, remaining

        spent, granted, remaining = await asyncio.to_thread(use)
        assert sum(spent) == granted == 100, spent
        assert remaining == 0


async def test_ratelimit_quota_leases_through_two_replicas_share_one_limit(
    start_ratelimit,
) -> None:
    async with (
        start_ratelimit() as (first, _),
        start_ratelimit() as (second, _),
        RateLimiter.connect(first.server.address) as one,
        RateLimiter.connect(second.server.address) as other,
    ):
        gcra = {"gcra": unique()}  # 20 an hour, burst 4: 4 now
        fixed = {"fixed": unique()}  # 100 an hour
        spent = {"gcra": 0, "fixed": 0}

        async def spend(limiter: RateLimiter, name: str, descriptor: dict[str, str]) -> None:
            async with QuotaLease(limiter, "quotas", descriptor, batch=7, ttl_s=5.0) as quota:
                while await quota.acquire(timeout_s=0.3):
                    spent[name] += 1
                    await asyncio.sleep(0)

        await asyncio.gather(
            *(
                spend(limiter, name, descriptor)
                for limiter in (one, other)
                for name, descriptor in (("gcra", gcra), ("fixed", fixed))
            )
        )
        assert spent == {"gcra": 4, "fixed": 100}
