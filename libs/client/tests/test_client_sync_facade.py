"""The blocking facades' loop thread and the async clients' channel ownership, on a real server.

The server runs on the test's event loop, so blocking calls go through `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Self

import grpc
import pytest
import pytest_asyncio

from tessera.client._channel import ChannelClient
from tessera.client._lifecycle import AsyncClosing
from tessera.client._rpc_errors import translated
from tessera.client._sync_facade import SyncFacade
from tessera.core import UnavailableError, ValidationError
from tessera.proto.diagnostics.v1 import diagnostics_pb2, diagnostics_pb2_grpc
from tessera.testing import serve_in_process

_THREAD = "tessera-test-echo"


class _EchoClient(ChannelClient):
    """The smallest SDK-style client: Diagnostics.Echo, errors translated."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        owns_channel: bool = False,
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(channel, owns_channel=owns_channel)
        self._stub = diagnostics_pb2_grpc.DiagnosticsStub(channel)
        self._on_close = on_close

    @classmethod
    def connect(cls, target: str, *, on_close: Callable[[], None] = lambda: None) -> Self:
        return cls(grpc.aio.insecure_channel(target), owns_channel=True, on_close=on_close)

    async def echo(self, payload: bytes) -> tuple[bytes, str]:
        request = diagnostics_pb2.EchoRequest(payload=payload)
        reply = await translated(self._stub.Echo(request, timeout=5))
        return reply.payload, threading.current_thread().name

    async def close(self) -> None:
        self._on_close()
        await super().close()


class _SyncEcho(SyncFacade[_EchoClient]):
    def __init__(self, open_client: Callable[[], _EchoClient]) -> None:
        super().__init__(open_client, thread_name=_THREAD, timeout_s=10.0)

    def echo(self, payload: bytes) -> tuple[bytes, str]:
        return self._run(self._client.echo(payload))


def _loop_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == _THREAD]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def target() -> AsyncIterator[str]:
    async with serve_in_process([]) as service:
        yield service.server.address


async def test_sync_facade_calls_the_client_on_its_loop_thread_and_closes_it(target: str) -> None:
    closes: list[str] = []
    facade = await asyncio.to_thread(
        _SyncEcho, lambda: _EchoClient.connect(target, on_close=lambda: closes.append("closed"))
    )
    try:
        payload, thread = await asyncio.to_thread(facade.echo, b"ping")
        assert (payload, thread) == (b"ping", _THREAD)
        assert len(_loop_threads()) == 1
    finally:
        await asyncio.to_thread(facade.close)

    assert closes == ["closed"]
    assert _loop_threads() == []


async def test_sync_facade_raises_the_clients_errors_unchanged(target: str) -> None:
    def call_too_large() -> None:
        with _SyncEcho(lambda: _EchoClient.connect(target)) as facade:
            facade.echo(b"x" * (1024 * 1024 + 1))

    with pytest.raises(ValidationError) as caught:
        await asyncio.to_thread(call_too_large)

    assert [violation.field for violation in caught.value.violations] == ["payload"]
    assert _loop_threads() == []


async def test_sync_facade_serves_many_threads_at_once(target: str) -> None:
    facade = await asyncio.to_thread(_SyncEcho, lambda: _EchoClient.connect(target))
    try:
        replies = await asyncio.gather(
            *(asyncio.to_thread(facade.echo, f"call {i}".encode()) for i in range(16))
        )
    finally:
        await asyncio.to_thread(facade.close)

    assert [payload for payload, _ in replies] == [f"call {i}".encode() for i in range(16)]


async def test_sync_facade_stops_its_thread_when_the_client_cannot_be_opened() -> None:
    def refuse() -> _EchoClient:
        raise ValidationError.for_field("target", "name a service")

    with pytest.raises(ValidationError):
        await asyncio.to_thread(_SyncEcho, refuse)

    assert _loop_threads() == []


async def test_sync_facade_stops_its_thread_when_closing_the_client_fails(target: str) -> None:
    def fail() -> None:
        raise UnavailableError("the service went away")

    facade = await asyncio.to_thread(_SyncEcho, lambda: _EchoClient.connect(target, on_close=fail))

    with pytest.raises(UnavailableError):
        await asyncio.to_thread(facade.close)

    assert _loop_threads() == []


async def test_channel_client_closes_only_the_channel_it_owns(target: str) -> None:
    borrowed = grpc.aio.insecure_channel(target)
    try:
        async with _EchoClient(borrowed) as client:
            assert await client.echo(b"a") == (b"a", threading.current_thread().name)
        assert borrowed.get_state() is not grpc.ChannelConnectivity.SHUTDOWN

        owner = _EchoClient.connect(target)
        async with owner:
            await owner.echo(b"b")
        with pytest.raises(grpc.aio.UsageError):
            await owner.echo(b"c")
    finally:
        await borrowed.close()


async def test_async_closing_returns_itself_and_closes_when_the_block_raises() -> None:
    class Resource(AsyncClosing):
        closed = 0

        async def close(self) -> None:
            self.closed += 1

    async def fail_inside(resource: Resource) -> None:
        async with resource as entered:
            assert entered is resource
            raise LookupError("the block failed")

    resource = Resource()
    with pytest.raises(LookupError):
        await fail_inside(resource)

    assert resource.closed == 1
