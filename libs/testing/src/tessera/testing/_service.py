from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import grpc

from tessera.core import TesseraSettings
from tessera.core.server import ServiceBinding, ServiceServer

_CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class RunningService:
    """A service server running in the test's event loop, and a channel connected to it.

    Attributes:
        server: The running server (``server.port``, ``server.address``, ``server.metrics``).
        channel: A grpc.aio channel, already connected to the server; build stubs on it.

    """

    server: ServiceServer
    channel: grpc.aio.Channel


@asynccontextmanager
async def serve_in_process(
    bindings: Sequence[ServiceBinding],
    settings: TesseraSettings | None = None,
    *,
    channel_credentials: grpc.ChannelCredentials | None = None,
    grace: float = 1.0,
) -> AsyncIterator[RunningService]:
    """Run a :class:`~tessera.core.server.ServiceServer` in this event loop and connect to it.

    The server has everything a deployed one has (health, reflection, Diagnostics, error
    mapping, ...), bound to ``settings.host`` on ``settings.port``, which is 0, a free port, unless
    the settings say otherwise. On exit the channel closes and the server stops.

    Example::

        async with serve_in_process([binding]) as service:
            stub = registry_pb2_grpc.RegistryStub(service.channel)

    Args:
        bindings: The services to run.
        settings: Server settings; ``TesseraSettings(port=0)`` when None.
        channel_credentials: Credentials for a TLS server (``settings`` with TLS files); None
            connects in plain text.
        grace: Seconds calls still running at exit may take before they are cancelled.

    Yields:
        The running server and a connected channel.

    Raises:
        ConfigError: From :class:`ServiceServer`: bad bindings or an address that cannot be bound.
        TimeoutError: The channel did not connect within 10 seconds.

    """
    server = ServiceServer(settings or TesseraSettings(port=0), bindings)
    await server.start()
    try:
        if channel_credentials is None:
            channel = grpc.aio.insecure_channel(server.address)
        else:
            channel = grpc.aio.secure_channel(server.address, channel_credentials)
        try:
            await asyncio.wait_for(channel.channel_ready(), _CONNECT_TIMEOUT)
            yield RunningService(server, channel)
        finally:
            await channel.close()
    finally:
        await server.stop(grace)


class ServiceStarter(Protocol):
    """The ``running_service`` fixture: serves bindings in-process until the test ends."""

    async def __call__(
        self, bindings: Sequence[ServiceBinding], settings: TesseraSettings | None = None
    ) -> RunningService:
        """Start a server for ``bindings`` and return it with a connected channel.

        Args:
            bindings: The services to run.
            settings: Server settings; ``TesseraSettings(port=0)`` when None.

        """
        ...
