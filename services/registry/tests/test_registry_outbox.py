import asyncio

from tessera.registry._view import RESET, Outbox


async def test_registry_outbox_hands_over_everything_waiting_in_order() -> None:
    outbox = Outbox(limit=4)
    taken = asyncio.create_task(outbox.take())
    await asyncio.sleep(0)
    assert not taken.done()  # nothing yet: the writer waits
    outbox.offer(b"a")
    outbox.offer(b"b")
    assert await asyncio.wait_for(taken, 1) == [b"a", b"b"]
    outbox.offer(b"c")
    assert await outbox.take() == [b"c"]


async def test_registry_outbox_replaces_a_backlog_over_its_limit_with_reset() -> None:
    outbox = Outbox(limit=3)
    for item in (b"1", b"2", b"3", b"4"):
        outbox.offer(item)
    outbox.offer(b"5")
    # The writer sends a fresh snapshot for RESET, then what came after it.
    assert await outbox.take() == [RESET, b"5"]
