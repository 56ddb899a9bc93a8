from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc

from tessera.client.registry._discovery import ServiceWatch
from tessera.core import UnavailableError
from tessera.core.plugins import BALANCERS, Balancer, Endpoint, LoadAwareBalancer, load_plugins

#: Status codes that count against an endpoint: it could not be reached or did not answer.
FAILURE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass(frozen=True, slots=True)
class RoutedCall:
    """Where one call goes: the endpoint picked and a channel connected to it."""

    endpoint: Endpoint
    channel: grpc.aio.Channel


@dataclass(slots=True)
class _Outlier:
    failures: int = 0
    ejected_until: float = 0.0
    ejections: int = 0


class BalancedChannel:
    """Per-call load balancing over a service's eligible instances, for grpc.aio stubs.

    Python gRPC has no pluggable resolver, so each call picks its endpoint here::

        async with api.call(key=user_id) as routed:
            reply = await MyStub(routed.channel).Get(request)

    - Candidates are the `ServiceWatch`'s eligible instances (protection and push-empty
      protection applied there).
    - Zone preference: when `zone` is set and some candidate is in it, only those are used.
    - Outlier ejection (Envoy's consecutive-failure detection): an endpoint whose calls fail
      `max_failures` times in a row with UNAVAILABLE or DEADLINE_EXCEEDED is left out for
      `ejection_s` times the number of its ejections so far; at most `max_ejected_share` of the
      candidates (and at least one) is ejected at a time. If nothing would be left, every
      candidate is used again (panic).
    - One channel per endpoint address, opened on first use and kept until `close`.

    Concurrency: one event loop.

    Args:
        watch: The discovery cache of the service.
        balancer: A `tessera.balancers` plugin name.
        zone: The caller's zone; empty for no preference.
        max_failures: Consecutive failures that eject an endpoint.
        ejection_s: Base ejection time.
        max_ejected_share: Largest share of candidates ejected at once.

    Raises:
        PluginError: The balancer is not installed.

    """

    def __init__(
        self,
        watch: ServiceWatch,
        *,
        balancer: str = "round_robin",
        zone: str = "",
        max_failures: int = 5,
        ejection_s: float = 30.0,
        max_ejected_share: float = 0.1,
    ) -> None:
        self._watch = watch
        self._balancer: Balancer = load_plugins(BALANCERS).get(balancer).create()
        self._zone = zone
        self._max_failures = max_failures
        self._ejection_s = ejection_s
        self._max_ejected_share = max_ejected_share
        self._outliers: dict[str, _Outlier] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        # The filtered candidates, rebuilt when the watch's set or the ejections change, so the
        # balancer sees one stable tuple between changes.
        self._source: object = None
        self._ejected: frozenset[str] = frozenset()
        self._candidates: tuple[Endpoint, ...] = ()

    @property
    def ejected(self) -> frozenset[str]:
        """Ids of the endpoints ejected now."""
        now = asyncio.get_running_loop().time()
        return frozenset(i for i, o in self._outliers.items() if o.ejected_until > now)

    @asynccontextmanager
    async def call(self, key: bytes | None = None) -> AsyncIterator[RoutedCall]:
        """Pick an endpoint for one call and yield it with its channel.

        A `grpc.aio.AioRpcError` raised inside the block counts against the endpoint when its
        code is in `FAILURE_CODES`; leaving the block normally counts as a success.

        Raises:
            UnavailableError: The service has no eligible instance.

        """
        endpoint = self._balancer.pick(self._eligible(), key)
        channel = self._channels.get(endpoint.address)
        if channel is None:
            channel = self._channels[endpoint.address] = grpc.aio.insecure_channel(endpoint.address)
        try:
            yield RoutedCall(endpoint, channel)
        except grpc.aio.AioRpcError as error:
            if error.code() in FAILURE_CODES:
                self._failed(endpoint)
            raise
        else:
            outlier = self._outliers.get(endpoint.id)
            if outlier is not None:
                outlier.failures = 0  # failures count only in a row
        finally:
            if isinstance(self._balancer, LoadAwareBalancer):
                self._balancer.complete(endpoint)

    async def close(self) -> None:
        """Close every channel."""
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()

    def _eligible(self) -> tuple[Endpoint, ...]:
        source = self._watch.endpoints
        if not source:
            raise UnavailableError("the service has no eligible instance")
        ejected = self.ejected
        if source is not self._source or ejected != self._ejected:
            kept = tuple(e for e in source if e.id not in ejected) or tuple(source)
            local = tuple(e for e in kept if self._zone and e.zone == self._zone)
            self._candidates = local or kept
            self._source, self._ejected = source, ejected
        return self._candidates

    def _failed(self, endpoint: Endpoint) -> None:
        outlier = self._outliers.setdefault(endpoint.id, _Outlier())
        outlier.failures += 1
        if outlier.failures < self._max_failures:
            return
        allowed = max(1, math.floor(len(self._watch.endpoints) * self._max_ejected_share))
        if len(self.ejected) >= allowed:
            return
        outlier.ejections += 1
        outlier.failures = 0
        now = asyncio.get_running_loop().time()
        outlier.ejected_until = now + self._ejection_s * outlier.ejections
