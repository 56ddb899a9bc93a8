"""The busy-polling event loop (`busy_poll_us`): its selector, its factory and `run`'s use of it."""

import asyncio
import selectors
import socket
import threading
import time
from contextlib import asynccontextmanager

import pytest

from tessera.core import ConfigError, TesseraSettings
from tessera.core.server import BusyPollSelector, event_loop_factory, run


@pytest.fixture
def pair():
    left, right = socket.socketpair()
    yield left, right
    left.close()
    right.close()


def _select(sock, window_s, timeout):
    """Select on `sock` for reading; return the ready keys' data, the wall and thread CPU time."""
    with BusyPollSelector(window_s=window_s) as selector:
        selector.register(sock, selectors.EVENT_READ, "left")
        wall, cpu = time.perf_counter(), time.thread_time()
        ready = selector.select(timeout)
        wall_s, cpu_s = time.perf_counter() - wall, time.thread_time() - cpu
    assert all(events == selectors.EVENT_READ for _, events in ready)
    return [key.data for key, _ in ready], wall_s, cpu_s


def test_ready_io_is_returned_at_once(pair):
    left, right = pair
    right.send(b"x")
    ready, wall_s, _ = _select(left, window_s=5.0, timeout=None)
    assert ready == ["left"]
    assert wall_s < 1.0


def test_io_arriving_during_the_window_is_found_by_polling(pair):
    left, right = pair
    timer = threading.Timer(0.2, right.send, (b"x",))
    timer.start()
    try:
        ready, wall_s, cpu_s = _select(left, window_s=5.0, timeout=None)
    finally:
        timer.join()
    assert ready == ["left"]
    assert 0.15 <= wall_s < 4.0
    # It polled the whole time, where a blocking select would have slept.
    assert cpu_s >= 0.05


def test_after_the_window_it_sleeps_for_the_rest_of_the_timeout(pair):
    ready, wall_s, cpu_s = _select(pair[0], window_s=0.1, timeout=0.6)
    assert ready == []
    assert wall_s >= 0.6 - 0.01  # never returns before the timeout...
    assert cpu_s < 0.4  # ...and slept after polling for 0.1 s


def test_the_window_never_outlasts_the_timeout(pair):
    ready, wall_s, _ = _select(pair[0], window_s=30.0, timeout=0.2)
    assert ready == []
    assert 0.19 <= wall_s < 5.0


def test_a_zero_timeout_polls_once(pair):
    ready, wall_s, _ = _select(pair[0], window_s=30.0, timeout=0)
    assert ready == []
    assert wall_s < 1.0


def test_a_window_must_be_positive():
    with pytest.raises(ValueError, match="window_s"):
        BusyPollSelector(window_s=0)


def test_no_busy_polling_means_asyncio_s_own_loop():
    assert event_loop_factory(0) is None


def test_the_factory_makes_loops_that_serve_sockets():
    factory = event_loop_factory(250)
    assert factory is not None

    async def echo_once() -> bytes:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.readexactly(5))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"hello")
            echoed = await reader.readexactly(5)
            writer.close()
            await writer.wait_closed()
        return echoed

    with asyncio.Runner(loop_factory=factory) as runner:
        selector = runner.get_loop()._selector  # type: ignore[attr-defined]
        assert isinstance(selector, BusyPollSelector)
        assert selector.window_s == pytest.approx(250e-6)
        assert runner.run(echo_once()) == b"hello"


@pytest.mark.parametrize(("busy_poll_us", "busy_polls"), [(0, False), (300, True)])
def test_run_serves_on_the_loop_the_settings_ask_for(busy_poll_us, busy_polls):
    seen = []

    @asynccontextmanager
    async def open_bindings(settings):
        seen.append(asyncio.get_running_loop()._selector)
        raise ConfigError("stop here", source="test")
        yield []  # pragma: no cover -- the bindings are never reached

    settings = TesseraSettings(busy_poll_us=busy_poll_us, log_level="ERROR")
    with pytest.raises(SystemExit) as exited:
        run(lambda: settings, open_bindings)
    assert exited.value.code == 1
    assert isinstance(seen[0], BusyPollSelector) is busy_polls
