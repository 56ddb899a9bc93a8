import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator

import pytest

from tessera.core import BackendError
from tessera.core.embedded import EtcdServer
from tessera.core.etcd import EtcdClient, EventType, Relist, RetryPolicy, WatchEvent
from tessera.testing import ServerFactory, TcpProxy

PATIENT = RetryPolicy(attempts=200, initial_backoff_s=0.05, max_backoff_s=0.3, deadline_s=30)
Item = WatchEvent | Relist


def _prefix() -> str:
    return f"/test/etcd-watch/{uuid.uuid4().hex}/"


async def _take(items: AsyncGenerator[Item, None], count: int) -> list[Item]:
    async with asyncio.timeout(15):
        return [await anext(items) for _ in range(count)]


def _changes(items: list[Item]) -> list[tuple[EventType, bytes, bytes]]:
    return [(i.type, i.key, i.value) for i in items if isinstance(i, WatchEvent)]


async def test_etcd_watch_sees_puts_and_deletes_in_order(etcd_server: EtcdServer) -> None:
    prefix = _prefix()
    async with EtcdClient([etcd_server.endpoint]) as etcd:
        start = (await etcd.get_prefix(prefix)).revision + 1
        revisions = [
            await etcd.put(prefix + "a", b"1"),
            await etcd.put(prefix + "b", b"2"),
            await etcd.put(prefix + "a", b"3"),
            await etcd.put("/elsewhere/" + prefix, b"not watched"),
        ]
        await etcd.delete(prefix + "b")
        watch = etcd.watch_prefix(prefix, start_revision=start)
        items = await _take(watch, 4)
        await watch.aclose()

    a, b = (prefix + "a").encode(), (prefix + "b").encode()
    assert _changes(items) == [
        (EventType.PUT, a, b"1"),
        (EventType.PUT, b, b"2"),
        (EventType.PUT, a, b"3"),
        (EventType.DELETE, b, b""),
    ]
    assert [i.revision for i in items[:3]] == revisions[:3]
    assert items[3].revision > revisions[3]


async def test_etcd_watch_from_now_skips_history(etcd_server: EtcdServer) -> None:
    prefix = _prefix()
    async with EtcdClient([etcd_server.endpoint]) as etcd:
        await etcd.put(prefix + "old", b"before the watch")
        watch = etcd.watch_prefix(prefix)
        first = asyncio.create_task(anext(watch))
        # The watch is established at some point after the task starts; keep writing until
        # it reports a change, which must be a new one.
        written = 0
        while not first.done() and written < 100:
            written += 1
            await etcd.put(prefix + "new", str(written))
            await asyncio.sleep(0.05)
        item = await asyncio.wait_for(first, 5)
        await watch.aclose()
    assert isinstance(item, WatchEvent)
    assert item.key == (prefix + "new").encode()


async def test_etcd_watch_resumes_after_restart_without_loss_or_duplicates(
    etcd_factory: ServerFactory[EtcdServer],
) -> None:
    server = await asyncio.to_thread(etcd_factory)
    async with EtcdClient([server.endpoint], retry=PATIENT) as etcd:
        start = (await etcd.get_prefix("/w/")).revision + 1
        watch = etcd.watch_prefix("/w/", start_revision=start)
        for n in range(5):
            await etcd.put(f"/w/{n}", str(n))
        before = await _take(watch, 5)

        await asyncio.to_thread(server.restart)
        # Written while the watcher reconnects: it must resume from where it stopped.
        for n in range(5, 10):
            await etcd.put(f"/w/{n}", str(n))
        after = await _take(watch, 5)
        extra = asyncio.create_task(anext(watch))
        await asyncio.sleep(0.5)
        assert not extra.done(), "an event was delivered twice"
        extra.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await extra

    assert _changes(before + after) == [
        (EventType.PUT, f"/w/{n}".encode(), str(n).encode()) for n in range(10)
    ]
    revisions = [i.revision for i in before + after]
    assert revisions == sorted(set(revisions))


async def test_etcd_watch_relists_after_compaction(etcd_factory: ServerFactory[EtcdServer]) -> None:
    server = await asyncio.to_thread(etcd_factory)
    async with EtcdClient([server.endpoint]) as etcd:
        await etcd.put("/c/a", b"1")
        stale = await etcd.put("/c/b", b"1")
        await etcd.put("/c/a", b"2")
        await etcd.delete("/c/b")
        latest = await etcd.put("/c/c", b"3")
        await etcd.compact(latest)

        watch = etcd.watch_prefix("/c/", start_revision=stale)
        (relist,) = await _take(watch, 1)
        after = await etcd.put("/c/d", b"4")
        (event,) = await _take(watch, 1)
        await watch.aclose()

    assert isinstance(relist, Relist)
    assert relist.snapshot.as_dict() == {b"/c/a": b"2", b"/c/c": b"3"}
    assert relist.revision >= latest
    assert event == WatchEvent(EventType.PUT, b"/c/d", b"4", after)


async def test_etcd_watch_relists_when_compacted_while_disconnected(
    etcd_factory: ServerFactory[EtcdServer],
) -> None:
    server = await asyncio.to_thread(etcd_factory)
    async with (
        TcpProxy(server.host, server.port) as proxy,
        EtcdClient([server.endpoint]) as writer,
        EtcdClient([proxy.address], retry=PATIENT) as watcher,
    ):
        start = await writer.put("/p/a", b"1")
        watch = watcher.watch_prefix("/p/", start_revision=start)
        (first,) = await _take(watch, 1)
        following = asyncio.create_task(anext(watch))

        await proxy.drop()
        await writer.put("/p/a", b"2")
        await writer.put("/p/b", b"2")
        compacted = await writer.put("/p/c", b"3")
        await writer.delete("/p/c")
        await writer.compact(compacted + 1)
        await proxy.heal()

        relist = await asyncio.wait_for(following, 15)
        await watch.aclose()

    assert first == WatchEvent(EventType.PUT, b"/p/a", b"1", start)
    assert isinstance(relist, Relist)
    assert relist.snapshot.as_dict() == {b"/p/a": b"2", b"/p/b": b"2"}
    assert relist.revision == compacted + 1


async def test_etcd_watch_fails_over_to_another_member(etcd_server: EtcdServer) -> None:
    prefix = _prefix()
    async with (
        TcpProxy(etcd_server.host, etcd_server.port) as proxy,
        EtcdClient([etcd_server.endpoint]) as writer,
        EtcdClient([proxy.address, etcd_server.endpoint], retry=PATIENT) as watcher,
    ):
        start = await writer.put(prefix + "0", b"0")
        watch = watcher.watch_prefix(prefix, start_revision=start)
        await _take(watch, 1)
        await proxy.drop()
        await writer.put(prefix + "1", b"1")
        (item,) = await _take(watch, 1)
        await watch.aclose()
        assert watcher.endpoint == etcd_server.endpoint
    assert isinstance(item, WatchEvent)
    assert (item.key, item.value) == ((prefix + "1").encode(), b"1")


async def test_etcd_watch_gives_up_after_the_retry_policy(etcd_server: EtcdServer) -> None:
    brief = RetryPolicy(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05, deadline_s=5)
    async with (
        TcpProxy(etcd_server.host, etcd_server.port) as proxy,
        EtcdClient([proxy.address], retry=brief) as watcher,
    ):
        await proxy.drop()
        with pytest.raises(BackendError) as caught:
            await asyncio.wait_for(anext(watcher.watch_prefix(_prefix())), 10)
    assert caught.value.retryable
    assert caught.value.backend == "etcd"
