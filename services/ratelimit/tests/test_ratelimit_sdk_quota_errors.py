"""QuotaLease and SyncQuotaLease on the real service: permanent errors surface, others retry."""

import asyncio
import itertools
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tessera.client.ratelimit import Grant, QuotaLease, RateLimiter, SyncRateLimiter
from tessera.core import NotFoundError, TesseraError, UnavailableError, ValidationError
from tessera.core.embedded import EtcdServer
from tessera.core.etcd import EtcdClient
from tessera.ratelimit import ConfigStore, installed_limiters
from tessera.testing import TcpProxy

# Quotas no rule can grant: (domain, descriptor, error, field violated).
PERMANENT = [
    pytest.param("quotas", "slots", ValidationError, "descriptor", id="concurrency"),
    pytest.param("quotas", "breaker", ValidationError, "descriptor", id="circuit-breaker"),
    pytest.param("api", "gradient", ValidationError, "descriptor", id="adaptive"),
    pytest.param("missing", "fixed", NotFoundError, None, id="unknown-domain"),
]


RULE = """\
domain: {domain}
descriptors:
  - key: user
    rate_limit: {{unit: hour, requests_per_unit: 100}}
"""


def unique() -> str:
    return uuid.uuid4().hex[:12]


def count_leases(
    limiter: RateLimiter, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[float, TesseraError | None]]:
    """Record when each Lease call (real, to the service) ends, and its error if it failed."""
    calls: list[tuple[float, TesseraError | None]] = []
    lease = limiter.lease

    async def counted(*args: object, **kwargs: object) -> Grant:
        try:
            grant = await lease(*args, **kwargs)  # type: ignore[arg-type]  # passed through
        except TesseraError as error:
            calls.append((time.monotonic(), error))
            raise
        calls.append((time.monotonic(), None))
        return grant

    monkeypatch.setattr(limiter, "lease", counted)
    return calls


async def until_served(limiter: RateLimiter, domain: str, *, served: bool) -> None:
    """Wait until the service has loaded (or dropped) `domain` from etcd."""

    async def serves() -> bool:
        try:
            await limiter.peek(domain, [{"user": "probe"}])
        except NotFoundError:
            return False
        return True

    async with asyncio.timeout(10):
        while await serves() != served:  # noqa: ASYNC110 - polls a server
            await asyncio.sleep(0.05)


def fields(error: TesseraError) -> list[str]:
    return [v.field for v in error.violations] if isinstance(error, ValidationError) else []


@pytest.mark.parametrize(("domain", "key", "kind", "field"), PERMANENT)
async def test_ratelimit_sdk_quota_raises_a_permanent_error_on_entering_and_never_retries(
    start_ratelimit,
    monkeypatch: pytest.MonkeyPatch,
    domain: str,
    key: str,
    kind: type[TesseraError],
    field: str | None,
) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        calls = count_leases(limiter, monkeypatch)
        quota = QuotaLease(limiter, domain, {key: unique()}, batch=10)
        with pytest.raises(kind) as entered:
            async with quota:
                pytest.fail("entered a quota whose rule cannot grant")
        assert fields(entered.value) == ([field] if field else [])
        assert not entered.value.retryable
        # Every later decision raises the same error, without asking the service again.
        await asyncio.sleep(0.3)  # three retry periods of the old behaviour
        with pytest.raises(kind) as decided:
            quota.try_acquire()
        with pytest.raises(kind) as renewed:
            await quota.renew()
        with pytest.raises(kind) as waited:
            await quota.acquire(timeout_s=5.0)
        for raised in (decided, renewed, waited):
            assert raised.value is entered.value
        assert len(calls) == 1
        assert quota.granted == 0
        await quota.close()  # still works: nothing held


async def test_ratelimit_sdk_quota_raises_a_permanent_error_at_the_next_decision(
    start_ratelimit, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        calls = count_leases(limiter, monkeypatch)
        quota = QuotaLease(limiter, "quotas", {"slots": unique()}, batch=10)
        assert not quota.try_acquire()  # holds nothing: starts the first renewal
        with pytest.raises(ValidationError) as waited:
            await quota.acquire(timeout_s=5.0)
        assert fields(waited.value) == ["descriptor"]
        with pytest.raises(ValidationError):
            quota.try_acquire()
        assert len(calls) == 1
        await quota.close()


async def test_ratelimit_sdk_quota_stops_holding_tokens_when_its_domain_is_deleted(
    start_ratelimit, etcd_server: EtcdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    domain = f"quota-{unique()}"
    rule = RULE.format(domain=domain)
    async with (
        EtcdClient([etcd_server.endpoint]) as etcd,
        start_ratelimit() as (running, _),
        RateLimiter.connect(running.server.address) as limiter,
    ):
        store = ConfigStore(etcd, algorithms=installed_limiters())
        await store.apply(rule)
        await until_served(limiter, domain, served=True)
        calls = count_leases(limiter, monkeypatch)
        async with QuotaLease(limiter, domain, {"user": unique()}, batch=8, renew_at=0.5) as quota:
            assert quota.try_acquire()
            assert await store.delete(domain)
            await until_served(limiter, domain, served=False)
            # Below half the batch: a renewal goes out in the background and finds no domain.
            assert [quota.try_acquire() for _ in range(4)] == [True] * 4
            async with asyncio.timeout(10):
                while len(calls) < 2:  # noqa: ASYNC110 - waits for the background renewal
                    await asyncio.sleep(0.01)
            # The 3 tokens it still held are dropped (given back), and the error surfaces.
            assert quota.available == 0
            with pytest.raises(NotFoundError):
                quota.try_acquire()
            await asyncio.sleep(0.3)
            assert [error is not None for _, error in calls] == [False, True]


async def test_ratelimit_sdk_quota_retries_an_unreachable_service_with_backoff_and_recovers(
    start_ratelimit, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with start_ratelimit() as (running, _):
        host, port = running.server.address.rsplit(":", 1)
        async with (
            TcpProxy(host, int(port)) as proxy,
            RateLimiter.connect(proxy.address, timeout_s=1.0) as limiter,
        ):
            calls = count_leases(limiter, monkeypatch)
            fixed = {"fixed": unique()}  # 100 an hour
            async with QuotaLease(limiter, "quotas", fixed, batch=3, ttl_s=30.0) as quota:
                assert calls[-1][1] is None
                await proxy.drop()
                # Spending the grant starts renewals; UNAVAILABLE is retryable, so the quota
                # runs dry and never raises.
                assert [quota.try_acquire() for _ in range(4)] == [True, True, True, False]
                assert not await quota.acquire(timeout_s=1.6)
                assert not quota.try_acquire()
                failed = calls[1:]
                assert all(isinstance(error, UnavailableError) for _, error in failed), failed
                # Waits of 0.1, 0.2, 0.4, 0.8 s between tries (a fixed 0.1 s made ~16).
                ends = [end for end, _ in failed]
                assert 2 <= len(ends) <= 6, ends
                gaps = [later - earlier for earlier, later in itertools.pairwise(ends)]
                assert all(gap >= 0.1 * 2**i - 0.005 for i, gap in enumerate(gaps)), gaps
                await proxy.heal()
                assert await quota.acquire(timeout_s=10.0)
                assert calls[-1][1] is None
                assert quota.granted >= 4


@pytest.mark.parametrize(("domain", "key", "kind", "field"), PERMANENT[:1] + PERMANENT[3:])
async def test_ratelimit_sdk_sync_quota_raises_a_permanent_error_in_every_thread(
    start_ratelimit, domain: str, key: str, kind: type[TesseraError], field: str | None
) -> None:
    async with start_ratelimit() as (running, _):

        def use() -> None:
            with SyncRateLimiter(running.server.address) as limiter:
                with pytest.raises(kind) as entered, limiter.quota(domain, {key: unique()}):
                    pytest.fail("entered a quota whose rule cannot grant")
                assert fields(entered.value) == ([field] if field else [])
                quota = limiter.quota(domain, {key: unique()}, batch=10)
                assert not quota.try_acquire()  # starts the first renewal on the loop
                with pytest.raises(kind):
                    quota.acquire(timeout_s=5.0)
                raised: list[BaseException] = []

                def decide() -> None:
                    try:
                        quota.try_acquire()
                    except TesseraError as error:
                        raised.append(error)

                with ThreadPoolExecutor(3) as pool:
                    list(pool.map(lambda _: decide(), range(3)))
                assert [type(error) for error in raised] == [kind] * 3
                quota.close()

        await asyncio.to_thread(use)
