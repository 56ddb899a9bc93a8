"""A Tessera server with a slow method, run by the shutdown tests as a child process.

Usage: ``python -m server_support.slow_server`` from ``libs/core/tests``; configured by
``TESSERA_*`` environment variables like any service. Calls of ``/test.v1.Slow/Sleep`` take
the number of seconds in the request (ASCII) and answer ``b"done"``; each logs
``sleep started`` first, so a test knows when the call is in flight.
"""

import asyncio

import grpc
import structlog

from tessera.core import TesseraSettings
from tessera.core.server import ServiceBinding, run, static_bindings

SLOW_SERVICE = "test.v1.Slow"

_log = structlog.get_logger("server_support.slow_server")


async def _sleep(request: bytes, context: object) -> bytes:
    seconds = float(request.decode() or 0)
    _log.info("sleep started", seconds=seconds)
    await asyncio.sleep(seconds)
    return b"done"


def slow_binding() -> ServiceBinding:
    """The binding of the slow service."""
    handler = grpc.method_handlers_generic_handler(
        SLOW_SERVICE, {"Sleep": grpc.unary_unary_rpc_method_handler(_sleep)}
    )
    return ServiceBinding(
        SLOW_SERVICE, handler, lambda servicer, server: server.add_generic_rpc_handlers((servicer,))
    )


if __name__ == "__main__":
    run(TesseraSettings.from_env, static_bindings([slow_binding()]))
