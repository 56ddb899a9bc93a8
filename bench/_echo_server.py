"""Echo servers for bench/floor.py, each run in its own process by the harness.

Usage: ``python bench/_echo_server.py {kit,bare} --port N``

- ``kit``: what a service's ``__main__`` runs (``tessera.core.server.serve``) with no bindings
  of its own: a ServiceServer answering Diagnostics through the kit's interceptors (metrics,
  request log context, error mapping, drain gate; no auth token, tracing off), plus health and
  reflection. TESSERA_* environment variables apply as they would to a service.
- ``bare``: a grpc.aio server with one generic handler for the same Diagnostics methods and no
  interceptors. Echo returns the request bytes unchanged, which are a valid EchoResponse because
  EchoRequest and EchoResponse carry the same field 1; EchoStream parses its request only to read
  ``count``. This is the floor: what grpc.aio costs before any Tessera code runs. It also answers
  ``/bench.Bare/Exchange`` (``BARE_EXCHANGE``), a bidirectional stream that sends back each
  message it receives: the floor of one message round trip on an open stream.

Both listen on 127.0.0.1 and stop on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator

import grpc

from tessera.proto.diagnostics.v1 import diagnostics_pb2

_SERVICE = "tessera.diagnostics.v1.Diagnostics"
_GRACE_S = 1.0
#: The bare server's bidirectional echo stream (raw bytes), outside every Tessera API.
BARE_EXCHANGE = "/bench.Bare/Exchange"


async def _serve_bare(port: int) -> None:
    async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request

    async def echo_stream(
        request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        parsed = diagnostics_pb2.EchoStreamRequest.FromString(request)
        response = diagnostics_pb2.EchoResponse(payload=parsed.payload).SerializeToString()
        for _ in range(parsed.count):
            yield response

    async def exchange(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        async for request in requests:
            yield request

    # No request_deserializer/response_serializer: handlers see and return raw bytes.
    service, _, method = BARE_EXCHANGE.lstrip("/").partition("/")
    exchange_handler = grpc.method_handlers_generic_handler(
        service, {method: grpc.stream_stream_rpc_method_handler(exchange)}
    )
    handler = grpc.method_handlers_generic_handler(
        _SERVICE,
        {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "EchoStream": grpc.unary_stream_rpc_method_handler(echo_stream),
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler, exchange_handler))
    server.add_insecure_port(f"127.0.0.1:{port}")
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    await server.start()
    await stopped.wait()
    await server.stop(_GRACE_S)


async def _serve_kit(port: int) -> None:
    # Imported here so the bare server never loads the kit (and its import-time cost).
    from tessera.core import TesseraSettings
    from tessera.core.server import serve

    # serve() is what a service's __main__ runs: logging, tracing (off), signals, stop.
    settings = TesseraSettings(
        host="127.0.0.1", port=port, trace_exporter="none", shutdown_grace_s=_GRACE_S
    )
    await serve(settings, bindings=[])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=("kit", "bare"))
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(_serve_kit(args.port) if args.kind == "kit" else _serve_bare(args.port))
