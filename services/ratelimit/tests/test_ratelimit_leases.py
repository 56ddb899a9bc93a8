import asyncio
import uuid

import pytest

from tessera.client.ratelimit import RateLimiter, SyncRateLimiter
from tessera.core import NotFoundError, ValidationError


async def test_ratelimit_concurrency_rule_hands_out_leases_and_releases_them(
    start_ratelimit,
) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        job = {"job": uuid.uuid4().hex}
        first, second, third = [await limiter.check("api", [job]) for _ in range(3)]
        assert first
        assert second
        assert not third
        held = [first.decisions[0], second.decisions[0]]
        assert all(d.algorithm == "concurrency" and d.lease for d in held), held
        assert held[0].lease != held[1].lease
        assert third.decisions[0].lease == ""
        assert third.decisions[0].retry_after_s > 0
        assert await limiter.release("api", job, held[0].lease)
        again = await limiter.check("api", [job])
        assert again
        assert again.decisions[0].remaining == 0
        assert not await limiter.release("api", job, held[0].lease)

        with pytest.raises(ValidationError) as raised:
            await limiter.release("api", job, "not-a-lease")
        assert [v.field for v in raised.value.violations] == ["lease"]
        with pytest.raises(ValidationError) as raised:
            await limiter.release("api", {"user": "u"}, held[1].lease)
        assert [v.field for v in raised.value.violations] == ["descriptor"]
        with pytest.raises(NotFoundError):
            await limiter.release("missing", job, held[1].lease)
        # The failed releases changed nothing: the second lease is still held.
        assert await limiter.release("api", job, held[1].lease)


async def test_ratelimit_leaky_bucket_rule_paces_admitted_requests(start_ratelimit) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        upload = {"upload": uuid.uuid4().hex}
        results = [await limiter.check("api", [upload]) for _ in range(3)]
        assert [bool(r) for r in results] == [True, True, False]
        delays = [r.decisions[0].delay_s for r in results]
        # 2 per minute: the second admitted request leaves the bucket 30 s after the first.
        assert delays[0] == 0, delays
        assert 29.0 < delays[1] <= 30.0, delays
        assert delays[2] == 0, delays
        assert results[0].decisions[0].algorithm == "leaky_bucket"


async def test_ratelimit_sync_facade_releases_leases(start_ratelimit) -> None:
    async with start_ratelimit() as (running, _):

        def use() -> list[bool]:
            with SyncRateLimiter(running.server.address) as limiter:
                job = {"job": uuid.uuid4().hex}
                leases = [limiter.check("api", [job]).decisions[0].lease for _ in range(2)]
                return [limiter.release("api", job, lease) for lease in leases * 2]

        assert await asyncio.to_thread(use) == [True, True, False, False]
