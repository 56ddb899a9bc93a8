from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import aetcd
import structlog

from tessera.core._errors import BackendError, ConfigError
from tessera.core._settings import TesseraSettings
from tessera.core.etcd._errors import ETCD_ERRORS, etcd_error
from tessera.core.etcd._kv import Key, KeyValue, Snapshot, key_bytes, prefix_end
from tessera.core.etcd._lease import KeptLease
from tessera.core.etcd._retry import RetryPolicy
from tessera.core.etcd._watch import Relist, WatchEvent, watch_prefix

T = TypeVar("T")

#: Seconds every unary etcd call may take before it fails with a retryable error.
DEFAULT_TIMEOUT_S = 5.0

_CHANNEL_OPTIONS = {
    # Notice a dead or frozen member within ~15 s even on an idle watch stream. etcd refuses
    # pings more often than every 5 s (--grpc-keepalive-min-time) and pings without a stream.
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    # gRPC's default reconnect backoff grows to 120 s; a restarted member must be found again
    # within a retry policy's budget, so cap it at 2 s.
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 2_000,
    # A snapshot of a large prefix (a relist) arrives in one Range response.
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
}


class EtcdClient:
    """An etcd connection with retries, failover across members, and typed errors.

    A thin layer over `aetcd.Client`: each call runs against the current member; when it fails
    with a connection error or timeout, the client moves to the next member of `endpoints` and,
    for idempotent calls, retries after an exponential backoff with jitter, within the bounds of
    its `RetryPolicy`. Every failure surfaces as `BackendError(backend="etcd")`, retryable when it
    was a connection error or timeout.

    Concurrency: one client serves any number of concurrent tasks of one event loop; it holds one
    gRPC channel per member it has used, all closed by `close`. Use it as an async context
    manager, or call `connect` and `close`.

    Args:
        endpoints: Members as `host:port` (an `http://` prefix is accepted and ignored).
        timeout_s: Deadline of each unary call, in seconds.
        retry: Retry policy of calls that do not pass their own.

    Raises:
        ConfigError: `endpoints` is empty or an endpoint is not `host:port`.

    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not endpoints:
            raise ConfigError("no etcd endpoint given", source="etcd_endpoints")
        self._members = tuple(_parse_endpoint(endpoint) for endpoint in endpoints)
        self._timeout_s = timeout_s
        self._retry = retry or RetryPolicy()
        self._current = 0
        self._clients: dict[int, Any] = {}
        self._closed = False

    @classmethod
    def from_settings(cls, settings: TesseraSettings, **kwargs: Any) -> Self:
        """Create a client for `settings.etcd_endpoints`; `kwargs` go to the constructor."""
        return cls(settings.etcd_endpoints, **kwargs)

    @property
    def endpoints(self) -> tuple[str, ...]:
        """All members, as `host:port`."""
        return tuple(f"{host}:{port}" for host, port in self._members)

    @property
    def endpoint(self) -> str:
        """The member calls go to now."""
        return self.endpoints[self._current]

    @property
    def retry(self) -> RetryPolicy:
        """The default retry policy."""
        return self._retry

    async def connect(self) -> Self:
        """Wait until a member answers a linearizable read, retrying per the policy.

        Returns:
            The client itself.

        Raises:
            BackendError: No member answered within the retry policy's bounds.

        """
        await self.execute(lambda client: client.get(b"\0"))
        return self

    async def close(self) -> None:
        """Close every channel; running watches end with a non-retryable `BackendError`.

        The client cannot be used afterwards.
        """
        self._closed = True
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def execute(
        self,
        operation: Callable[[Any], Awaitable[T]],
        *,
        idempotent: bool = True,
        retry: RetryPolicy | None = None,
    ) -> T:
        """Run one call against the current member, failing over and retrying as configured.

        This is how to reach the parts of aetcd this class does not wrap, such as transactions::

            succeeded, _ = await etcd.execute(
                lambda c: c.transaction(compare=[...], success=[...], failure=[...]),
                idempotent=False,
            )

        Args:
            operation: Called with the `aetcd.Client` of the current member; awaited.
            idempotent: Whether running the call twice has the effect of running it once. A call
                that is not is never retried, since a timeout does not tell whether it applied;
                its errors are still retryable for a caller that knows better.
            retry: Overrides the client's policy for this call.

        Returns:
            What `operation` returned.

        Raises:
            BackendError: The call failed and may not be retried (or retries ran out); chained to
                the aetcd or gRPC error.

        """
        policy = retry or self._retry
        loop = asyncio.get_running_loop()
        started = loop.time()
        tries = 0
        while True:
            index, client = await self._session()
            try:
                return await operation(client)
            except ETCD_ERRORS as error:
                tries += 1
                failure = etcd_error(error, self.endpoints[index])
                if failure.retryable:
                    self._fail_over(index)
                sleep = None
                if failure.retryable and idempotent:
                    sleep = policy.next_sleep(tries, loop.time() - started)
                if sleep is None:
                    raise failure from error
            await asyncio.sleep(sleep)

    async def get(self, key: Key) -> KeyValue | None:
        """Read one key (linearizable).

        Returns:
            The key, or None when it does not exist.

        Raises:
            BackendError: etcd failed.

        """
        found = await self.execute(lambda client: client.get(key_bytes(key)))
        return None if found is None else KeyValue.from_proto(found)

    async def get_prefix(self, prefix: Key) -> Snapshot:
        """Read every key under a prefix at one revision (linearizable).

        Raises:
            BackendError: etcd failed.

        """
        start = key_bytes(prefix)
        found = await self.execute(lambda client: client.get_range(start, prefix_end(start)))
        items = tuple(KeyValue.from_proto(kv) for kv in found.kvs)
        return Snapshot(revision=int(found.header.revision), items=items)

    async def put(self, key: Key, value: bytes | str, *, lease: int = 0) -> int:
        """Write one key, optionally attached to a lease.

        Args:
            key: The key.
            value: Its new value.
            lease: ID of a lease the key lives and dies with; 0 for none.

        Returns:
            The revision of the write.

        Raises:
            BackendError: etcd failed (also when the lease does not exist, not retryable).

        """
        written = await self.execute(lambda c: c.put(key_bytes(key), key_bytes(value), lease=lease))
        return int(written.header.revision)

    async def delete(self, key: Key) -> bool:
        """Delete one key.

        Returns:
            Whether this call deleted it (False if it did not exist, or if a retried attempt found
            it deleted by an earlier attempt whose answer was lost).

        Raises:
            BackendError: etcd failed.

        """
        deleted = await self.execute(lambda client: client.delete(key_bytes(key)))
        return deleted is not None

    async def delete_prefix(self, prefix: Key) -> int:
        """Delete every key under a prefix.

        Returns:
            How many keys this call deleted.

        Raises:
            BackendError: etcd failed.

        """
        start = key_bytes(prefix)
        deleted = await self.execute(lambda c: c.delete_range(start, prefix_end(start)))
        return int(deleted.deleted)

    async def compact(self, revision: int) -> None:
        """Drop the history before `revision`; watches older than it must relist.

        Raises:
            BackendError: etcd failed (not retryable if `revision` is compacted already or in
                the future).

        """
        await self.execute(lambda client: client.compact(revision))

    async def grant_lease(self, ttl_s: int) -> tuple[int, int]:
        """Grant a lease.

        A retried grant may leave an unused lease behind; it expires after its TTL.

        Args:
            ttl_s: Requested time to live in seconds; etcd raises values below its minimum.

        Returns:
            The lease ID and the TTL etcd granted.

        Raises:
            BackendError: etcd failed.

        """
        lease = await self.execute(lambda client: client.lease(ttl_s))
        return int(lease.id), int(lease.ttl)

    async def refresh_lease(self, lease_id: int, *, retry: RetryPolicy | None = None) -> int:
        """Send one keep-alive for a lease.

        Args:
            lease_id: The lease.
            retry: Overrides the client's policy for this call.

        Returns:
            The TTL the lease has again, in seconds; 0 when etcd no longer knows the lease (it
            expired or was revoked).

        Raises:
            BackendError: etcd failed.

        """
        reply = await self.execute(lambda client: client.refresh_lease(lease_id), retry=retry)
        return 0 if reply is None else max(int(reply.TTL), 0)

    async def revoke_lease(self, lease_id: int) -> None:
        """Revoke a lease, deleting its keys; a lease that is gone already is not an error.

        Raises:
            BackendError: etcd failed.

        """
        try:
            await self.execute(lambda client: client.revoke_lease(lease_id))
        except BackendError as error:
            if "lease not found" not in error.message:
                raise

    def watch_prefix(
        self,
        prefix: Key,
        *,
        start_revision: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> AsyncGenerator[WatchEvent | Relist, None]:
        """Watch every change under a prefix, surviving reconnects and compaction.

        See `tessera.core.etcd.watch_prefix` for the contract.
        """
        return watch_prefix(self, key_bytes(prefix), start_revision=start_revision, retry=retry)

    def keep_lease(self, ttl_s: int) -> KeptLease:
        """Return a `KeptLease` of `ttl_s` seconds on this client, to use with `async with`."""
        return KeptLease(self, ttl_s)

    async def _session(self) -> tuple[int, Any]:
        """Return the index and connected aetcd client of the current member.

        For this package's watch loop, which opens its own streams on the client's channel.
        """
        if self._closed:
            raise BackendError("the etcd client is closed", backend="etcd", retryable=False)
        index = self._current
        client = self._clients.get(index)
        if client is None:
            host, port = self._members[index]
            client = aetcd.Client(
                host=host, port=port, timeout=self._timeout_s, options=_CHANNEL_OPTIONS
            )
            self._clients[index] = client
        await client.connect()
        return index, client

    def _fail_over(self, failed: int) -> None:
        """Move to the next member after member `failed` did not answer."""
        # Several tasks may fail on the same member at once: only the first one moves on.
        if failed == self._current and len(self._members) > 1:
            self._current = (failed + 1) % len(self._members)
            structlog.get_logger(__name__).warning(
                "etcd_failover", failed=self.endpoints[failed], now=self.endpoint
            )


def _parse_endpoint(endpoint: str) -> tuple[str, int]:
    address = endpoint.removeprefix("http://").rstrip("/")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"etcd endpoint {endpoint!r} is not host:port", source="etcd_endpoints")
    return host, int(port)
