"""The floor: what one call through the Tessera server kit costs over raw grpc.aio.

Usage: ``python bench/floor.py [--duration S] [--warmup S] [--concurrency N] [--json]
[--target HOST:PORT] [--smoke]``

Cases, each measured right after its baseline in the same run:

- ``unary_echo``: Diagnostics.Echo with a 64-byte payload on a Tessera ServiceServer (the
  server kit and its interceptors, tracing off); baseline ``unary_echo_bare``: the same call
  on a bare grpc.aio server with a generic bytes handler and no interceptors.
- ``stream_echo``: Diagnostics.EchoStream returning 100 messages per call, counted in
  messages per second (latencies time whole streams); baseline ``stream_echo_bare``.

Each server runs in its own child process; the client is this process, with one channel per
server shared by all workers. With ``--target`` the two Tessera cases run against that server
(every Tessera service answers Diagnostics) and carry no baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
from harness import (
    BenchOptions,
    Comparison,
    Endpoint,
    Operation,
    ServerHandle,
    free_port,
    measure,
    run,
    server_process,
)

from tessera.proto.diagnostics.v1 import diagnostics_pb2, diagnostics_pb2_grpc

PAYLOAD = b"x" * 64
STREAM_COUNT = 100
_ECHO_SERVER = Path(__file__).with_name("_echo_server.py")
_CONNECT_TIMEOUT_S = 10.0


class EchoMismatchError(RuntimeError):
    """The server under test did not echo what it was sent."""


class EchoClient:
    """The two Diagnostics calls, as operations for the harness, on one channel.

    ``server`` is the server process behind the channel when this run started it.
    """

    def __init__(self, channel: grpc.aio.Channel, server: ServerHandle | None) -> None:
        self.server = server
        self._stub = diagnostics_pb2_grpc.DiagnosticsStub(channel)
        self._echo_request = diagnostics_pb2.EchoRequest(payload=PAYLOAD)
        self._stream_request = diagnostics_pb2.EchoStreamRequest(
            payload=PAYLOAD, count=STREAM_COUNT
        )

    async def echo(self) -> diagnostics_pb2.EchoResponse:
        return await self._stub.Echo(self._echo_request)

    async def echo_stream(self) -> int:
        received = 0
        async for _ in self._stub.EchoStream(self._stream_request):
            received += 1
        return received

    async def check(self) -> None:
        """Fail before measuring if the server does not echo correctly."""
        response = await self.echo()
        if response.payload != PAYLOAD:
            raise EchoMismatchError(f"Echo returned {response.payload!r}")
        received = await self.echo_stream()
        if received != STREAM_COUNT:
            raise EchoMismatchError(f"EchoStream sent {received} of {STREAM_COUNT} messages")


@contextlib.asynccontextmanager
async def echo_client(
    endpoint: Endpoint, server: ServerHandle | None = None
) -> AsyncIterator[EchoClient]:
    """Open a checked EchoClient on a channel to endpoint."""
    async with grpc.aio.insecure_channel(str(endpoint)) as channel:
        await asyncio.wait_for(channel.channel_ready(), _CONNECT_TIMEOUT_S)
        client = EchoClient(channel, server)
        await client.check()
        yield client


# Case name, the client call it times, and how many units (messages) one call counts for.
_CASES: tuple[tuple[str, Callable[[EchoClient], Operation], int], ...] = (
    ("unary_echo", lambda client: client.echo, 1),
    ("stream_echo", lambda client: client.echo_stream, STREAM_COUNT),
)


async def measure_cases(
    ours: EchoClient, baseline: EchoClient | None, options: BenchOptions
) -> list[Comparison]:
    """Measure every case on ours, each right after its bare baseline when there is one."""
    comparisons = []
    for case, call, units in _CASES:
        bare = None
        if baseline is not None:
            bare = await measure(
                f"{case}_bare",
                call(baseline),
                options,
                units_per_op=units,
                server=baseline.server,
            )
        result = await measure(case, call(ours), options, units_per_op=units, server=ours.server)
        comparisons.append(Comparison(result, bare))
    return comparisons


def echo_server(kind: str) -> contextlib.AbstractAsyncContextManager[ServerHandle]:
    """Run bench/_echo_server.py's ``kind`` server ("kit" or "bare") in a child process."""
    endpoint = Endpoint("127.0.0.1", free_port())
    argv = [sys.executable, str(_ECHO_SERVER), kind, "--port", str(endpoint.port)]
    return server_process(argv, endpoint)


async def bench(options: BenchOptions) -> list[Comparison]:
    if options.target is not None:
        async with echo_client(options.target) as target:
            return await measure_cases(target, None, options)
    async with (
        echo_server("bare") as bare_server,
        echo_server("kit") as kit_server,
        echo_client(bare_server.endpoint, bare_server) as bare,
        echo_client(kit_server.endpoint, kit_server) as kit,
    ):
        return await measure_cases(kit, bare, options)


if __name__ == "__main__":
    sys.exit(run(__doc__ or "", bench))
