import asyncio
import time
import uuid

import pytest

from tessera.core import BackendError, ConfigError, TesseraSettings
from tessera.core.embedded import EtcdServer, free_port
from tessera.core.etcd import EtcdClient, RetryPolicy, prefix_end
from tessera.testing import ServerFactory, TcpProxy

FAST = RetryPolicy(attempts=4, initial_backoff_s=0.02, max_backoff_s=0.1, deadline_s=2.0)


def _prefix() -> str:
    return f"/test/etcd-client/{uuid.uuid4().hex}/"


async def test_etcd_put_get_delete_through_the_wrapper(etcd_server: EtcdServer) -> None:
    settings = TesseraSettings(etcd_endpoints=[etcd_server.endpoint])
    prefix = _prefix()
    async with EtcdClient.from_settings(settings) as etcd:
        first = await etcd.put(prefix + "a", b"1")
        second = await etcd.put(prefix + "b", "2")
        assert second > first

        got = await etcd.get(prefix + "a")
        assert got is not None
        assert (got.key, got.value, got.mod_revision, got.version) == (
            (prefix + "a").encode(),
            b"1",
            first,
            1,
        )
        assert await etcd.get(prefix + "missing") is None

        snapshot = await etcd.get_prefix(prefix)
        assert snapshot.as_dict() == {(prefix + "a").encode(): b"1", (prefix + "b").encode(): b"2"}
        assert snapshot.revision >= second

        assert await etcd.delete(prefix + "a") is True
        assert await etcd.delete(prefix + "a") is False
        assert await etcd.delete_prefix(prefix) == 1
        assert (await etcd.get_prefix(prefix)).items == ()


async def test_etcd_unreachable_member_fails_retryable_within_the_policy_bounds() -> None:
    etcd = EtcdClient([f"127.0.0.1:{free_port()}"], timeout_s=1.0, retry=FAST)
    started = time.monotonic()
    with pytest.raises(BackendError) as caught:
        await etcd.connect()
    await etcd.close()

    assert time.monotonic() - started < 5
    assert caught.value.backend == "etcd"
    assert caught.value.retryable is True
    assert "UNAVAILABLE" in caught.value.message


async def test_etcd_fails_over_to_the_next_member(etcd_server: EtcdServer) -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with EtcdClient([dead, etcd_server.endpoint], retry=FAST) as etcd:
        assert etcd.endpoint == etcd_server.endpoint
        key = _prefix() + "k"
        await etcd.put(key, b"v")
        assert (await etcd.get(key)) is not None


async def test_etcd_rejected_request_is_not_retryable(etcd_server: EtcdServer) -> None:
    async with EtcdClient([etcd_server.endpoint], retry=FAST) as etcd:
        with pytest.raises(BackendError) as caught:
            await etcd.put(_prefix() + "k", b"v", lease=0x7E57)
    assert caught.value.retryable is False
    assert "lease not found" in caught.value.message


async def test_etcd_non_idempotent_call_is_not_retried() -> None:
    calls = 0

    async def operation(client: object) -> None:
        nonlocal calls
        calls += 1
        raise TimeoutError

    etcd = EtcdClient([f"127.0.0.1:{free_port()}"], retry=FAST)
    with pytest.raises(BackendError) as caught:
        await etcd.execute(operation, idempotent=False)
    assert calls == 1
    assert caught.value.retryable is True
    with pytest.raises(BackendError):
        await etcd.execute(operation)
    assert calls == 1 + FAST.attempts
    await etcd.close()


async def test_etcd_calls_survive_a_member_restart(etcd_factory: ServerFactory[EtcdServer]) -> None:
    server = await asyncio.to_thread(etcd_factory)
    patient = RetryPolicy(attempts=100, max_backoff_s=0.3, deadline_s=30)
    async with EtcdClient([server.endpoint], retry=patient) as etcd:
        await etcd.put("/restart/k", b"before")
        await asyncio.to_thread(server.kill)
        restart = asyncio.create_task(asyncio.to_thread(server.start))
        # Issued while the member is down: retried until it is back.
        revision = await etcd.put("/restart/k", b"after")
        await restart
        got = await etcd.get("/restart/k")
    assert got is not None
    assert (got.value, got.mod_revision) == (b"after", revision)


async def test_etcd_client_closed_is_final(etcd_server: EtcdServer) -> None:
    etcd = await EtcdClient([etcd_server.endpoint]).connect()
    await etcd.close()
    with pytest.raises(BackendError, match="closed") as caught:
        await etcd.get("/anything")
    assert caught.value.retryable is False


async def test_etcd_through_a_dropped_proxy_is_retryable(etcd_server: EtcdServer) -> None:
    async with (
        TcpProxy(etcd_server.host, etcd_server.port) as proxy,
        EtcdClient([proxy.address], retry=FAST) as etcd,
    ):
        await proxy.drop()
        with pytest.raises(BackendError) as caught:
            await etcd.get("/anything")
        assert caught.value.retryable
        await proxy.heal()
        patient = RetryPolicy(attempts=50, max_backoff_s=0.2, deadline_s=10)
        assert await etcd.execute(lambda c: c.get(b"/anything"), retry=patient) is None


@pytest.mark.parametrize("endpoints", [[], ["no-port"], ["host:notaport"]])
def test_etcd_bad_endpoints_are_config_errors(endpoints: list[str]) -> None:
    with pytest.raises(ConfigError):
        EtcdClient(endpoints)


def test_etcd_endpoint_accepts_http_scheme() -> None:
    assert EtcdClient(["http://127.0.0.1:2379/"]).endpoints == ("127.0.0.1:2379",)


@pytest.mark.parametrize(
    ("prefix", "end"),
    [(b"/a/", b"/a0"), (b"a\xff", b"b"), (b"\xff\xff", b"\0"), (b"", b"\0")],
)
def test_etcd_prefix_end(prefix: bytes, end: bytes) -> None:
    assert prefix_end(prefix) == end


def test_etcd_retry_policy_is_bounded_and_jittered() -> None:
    policy = RetryPolicy(attempts=4, initial_backoff_s=1.0, max_backoff_s=3.0, deadline_s=100)
    sleeps = [policy.backoff(retry) for retry in (1, 2, 3, 4) for _ in range(200)]
    assert all(0 <= s <= 3.0 for s in sleeps)
    assert len(set(sleeps)) > 100  # jittered, not fixed
    assert max(policy.backoff(1) for _ in range(200)) <= 1.0
    assert policy.next_sleep(4, 0) is None
    assert policy.next_sleep(1, elapsed_s=100.0) is None
    assert policy.next_sleep(1, elapsed_s=0.0) is not None


def test_etcd_public_api_is_pinned() -> None:
    import tessera.core.etcd as package

    assert package.__all__ == [
        "DEFAULT_TIMEOUT_S",
        "NO_RETRY",
        "EtcdClient",
        "EventType",
        "KeptLease",
        "Key",
        "KeyValue",
        "Relist",
        "RetryPolicy",
        "Snapshot",
        "WatchEvent",
        "etcd_error",
        "prefix_end",
        "watch_prefix",
    ]
    assert all(hasattr(package, name) for name in package.__all__)
