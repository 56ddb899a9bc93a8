"""The channel ownership the SDK's single-service async clients share.

A `ChannelClient` talks to one service over one `grpc.aio.Channel`. It either borrows the
channel (the caller opened it and closes it) or owns it (`owns_channel=True`, as the
subclasses' `connect(target)` does with a plain-text channel), in which case `close` closes
it. Use from the event loop that created the channel.
"""

from __future__ import annotations

import grpc

from tessera.client._lifecycle import AsyncClosing


class ChannelClient(AsyncClosing):
    """Base of the SDK clients bound to one grpc.aio channel.

    Args:
        channel: A grpc.aio channel to the service.
        owns_channel: Whether `close` closes the channel.

    """

    def __init__(self, channel: grpc.aio.Channel, *, owns_channel: bool = False) -> None:
        self._channel = channel
        self._owns_channel = owns_channel

    async def close(self) -> None:
        """Close the channel if this client opened it."""
        if self._owns_channel:
            await self._channel.close()
