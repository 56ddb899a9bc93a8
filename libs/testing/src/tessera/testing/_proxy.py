from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self

_CHUNK = 65536


class TcpProxy:
    """A TCP proxy between clients and one server, for partition and latency tests.

    Clients connect to :attr:`address` instead of the server. The proxy forwards bytes both
    ways until a fault is injected:

    - :meth:`delay` holds every chunk for some seconds before forwarding it (latency);
    - :meth:`blackhole` accepts connections and reads nothing more: bytes stay in the sockets'
      buffers, so callers hang until their own timeouts, as behind a dropped route;
    - :meth:`drop` resets every connection and refuses new ones (the port stops listening);
    - :meth:`heal` removes every fault: held bytes flow again, the port listens again.

    Runs on the caller's event loop; use it from one loop. An async context manager starts and
    stops it.

    Args:
        target_host: The server's address.
        target_port: The server's port.
        listen_host: The address the proxy listens on.

    """

    def __init__(self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1"):
        self.target_host = target_host
        self.target_port = target_port
        self.listen_host = listen_host
        self._listen_port = 0
        self._server: asyncio.Server | None = None
        self._delay = 0.0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def listen_port(self) -> int:
        """The port clients connect to (chosen free by :meth:`start`, kept across faults)."""
        if not self._listen_port:
            raise RuntimeError("the proxy has not been started")
        return self._listen_port

    @property
    def address(self) -> str:
        """``listen_host:listen_port``, the target clients use instead of the server's."""
        return f"{self.listen_host}:{self.listen_port}"

    async def start(self) -> Self:
        """Listen on a free port; returns the proxy itself."""
        await self._listen()
        return self

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        await self._close()
        self._flowing.set()

    def delay(self, seconds: float) -> None:
        """Hold each chunk ``seconds`` before forwarding it, in both directions, from now on."""
        self._delay = seconds

    def blackhole(self) -> None:
        """Stop forwarding: connections stay open and new ones are accepted, but nothing passes."""
        self._flowing.clear()

    async def drop(self) -> None:
        """Reset every open connection and refuse new ones until :meth:`heal`."""
        await self._close()

    async def heal(self) -> None:
        """Remove every fault: no delay, bytes flow, and the port listens again if dropped."""
        self._delay = 0.0
        self._flowing.set()
        if self._server is None:
            await self._listen()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.listen_host, self._listen_port, reuse_address=True
        )
        self._listen_port = int(self._server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        connections = list(self._connections)
        for connection in connections:
            connection.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None  # stream servers run each connection in a task
        self._connections.add(task)
        server_out: asyncio.StreamWriter | None = None
        try:
            # A blackholed proxy accepts, but does not even reach the server.
            await self._flowing.wait()
            server_in, server_out = await asyncio.open_connection(
                self.target_host, self.target_port
            )
            pumps = [
                asyncio.ensure_future(self._pump(client_in, server_out)),
                asyncio.ensure_future(self._pump(server_in, client_out)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        except OSError:
            pass  # the server is unreachable or a side reset: the client sees its connection end
        finally:
            # abort, not close: a dropped connection must end with a reset, without lingering.
            client_out.transport.abort()
            if server_out is not None:
                server_out.transport.abort()
            self._connections.discard(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while True:
            await self._flowing.wait()
            chunk = await source.read(_CHUNK)
            if not chunk:
                # Half-close: pass the end of stream on and keep the other direction going.
                with contextlib.suppress(OSError):
                    sink.write_eof()
                return
            if self._delay:
                await asyncio.sleep(self._delay)
            await self._flowing.wait()
            sink.write(chunk)
            await sink.drain()
