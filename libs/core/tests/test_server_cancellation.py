import asyncio
import gc

import grpc
import structlog

from tessera.core import TesseraSettings
from tessera.core.server import ServiceBinding, ServiceServer

FLOOD = "test.v1.Flood"
CHUNK = b"f" * 65536


def _flood_binding(closed: list[bool]) -> ServiceBinding:
    async def flood(request: bytes, context):
        # Far more than the flow-control window: the server waits for the client to read.
        try:
            for _ in range(1000):
                yield CHUNK
        finally:
            closed.append(True)

    async def request_context(request: bytes, context) -> bytes:
        bound = structlog.contextvars.get_contextvars()
        return f"{bound['method']} {bound['peer']}".encode()

    handler = grpc.method_handlers_generic_handler(
        FLOOD,
        {
            "Flood": grpc.unary_stream_rpc_method_handler(flood),
            "RequestContext": grpc.unary_unary_rpc_method_handler(request_context),
        },
    )
    return ServiceBinding(
        FLOOD, handler, lambda servicer, server: server.add_generic_rpc_handlers((servicer,))
    )


async def test_calls_see_their_method_and_peer_in_the_log_context():
    async with (
        ServiceServer(TesseraSettings(), [_flood_binding([])]) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        answer = await channel.unary_unary(f"/{FLOOD}/RequestContext")(b"", timeout=5)
    method, peer = answer.decode().split(" ")
    assert method == f"/{FLOOD}/RequestContext"
    assert peer.startswith("ipv4:127.0.0.1:")


async def test_a_stream_whose_client_goes_away_closes_cleanly():
    # Regression: the server stops iterating a stream blocked on flow control when its client
    # cancels, and the event loop closes the abandoned generator later in a task of its own;
    # resetting the request's log context there raised "created in a different Context".
    closed: list[bool] = []
    raised: list[BaseException] = []
    gc.collect()  # garbage of earlier tests (destroyed pending tasks) is theirs to report
    loop = asyncio.get_running_loop()
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(
        lambda loop, error: raised.append(error["exception"]) if "exception" in error else None
    )
    try:
        async with (
            ServiceServer(TesseraSettings(), [_flood_binding(closed)]) as server,
            grpc.aio.insecure_channel(server.address) as channel,
        ):
            for _ in range(2):
                call = channel.unary_stream(f"/{FLOOD}/Flood")(b"", timeout=5)
                assert await call.read() == CHUNK
                call.cancel()
            async with asyncio.timeout(5):
                while len(closed) < 2:
                    gc.collect()
                    await asyncio.sleep(0.02)
            labels = {"service": FLOOD, "method": "Flood"}
            registry = server.metrics.registry
            assert registry.get_sample_value("tessera_grpc_server_in_flight", labels) == 0
            duration_count = "tessera_grpc_server_request_duration_seconds_count"
            assert registry.get_sample_value(duration_count, labels) == 2
    finally:
        loop.set_exception_handler(previous_handler)
    assert raised == []
