from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import structlog
from aetcd import rpc

from tessera.core._errors import BackendError
from tessera.core.etcd._errors import ETCD_ERRORS, TRANSIENT_CODES, etcd_error
from tessera.core.etcd._kv import Snapshot, prefix_end
from tessera.core.etcd._retry import RetryPolicy

if TYPE_CHECKING:
    from tessera.core.etcd._client import EtcdClient

# A watch stream also breaks in these ways when a member stops or a proxy resets it; none of them
# says anything about the watch itself, so the stream is opened again.
_BROKEN_STREAM = TRANSIENT_CODES | {
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
}


class EventType(enum.Enum):
    """What happened to a key."""

    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change of one key.

    Attributes:
        type: A put (creation or update) or a delete.
        key: The key.
        value: The new value; empty for a delete.
        revision: The store revision of the change (the key's `mod_revision`).

    """

    type: EventType
    key: bytes
    value: bytes
    revision: int


@dataclass(frozen=True, slots=True)
class Relist:
    """The history a watch needed was compacted: here is the whole prefix instead.

    The consumer must replace everything it knows about the prefix with `snapshot` (keys missing
    from it were deleted), then go on applying the events that follow, whose revisions are all
    greater than `revision`.

    Attributes:
        snapshot: Every key under the prefix at `revision`.

    """

    snapshot: Snapshot

    @property
    def revision(self) -> int:
        """The revision of the snapshot."""
        return self.snapshot.revision


async def watch_prefix(
    etcd: EtcdClient,
    prefix: bytes,
    *,
    start_revision: int | None = None,
    retry: RetryPolicy | None = None,
) -> AsyncGenerator[WatchEvent | Relist, None]:
    """Watch every change under a prefix, resuming after breaks and relisting after compaction.

    Contract:

    - Order: events come in revision order; the events of one revision (one transaction) come
      together, in the order etcd reports them.
    - Start: from `start_revision` (inclusive) when given, else from the first change after the
      watch is established.
    - Breaks: when the stream breaks (member restarted or unreachable, connection reset), the
      watch moves to the next member, waits per the retry policy and resumes at the revision after
      the last one delivered; nothing is lost and, within one iteration, nothing is delivered
      twice. Progress notifications keep the resume point fresh while the prefix is idle.
    - Compaction: when the revision to resume from was compacted, a `Relist` comes with the whole
      prefix at a current revision, and events continue after it. Relists are also how a watch
      started at a compacted `start_revision` begins.
    - At-least-once across restarts: a consumer that persists the last revision it applied and
      restarts its watch from there sees no gap but may see events again, so it applies events
      idempotently (keyed by key, ignoring revisions not newer than the one it holds).
    - Backpressure: responses are read as the consumer iterates, so a slow consumer slows the
      stream down instead of growing memory.

    Args:
        etcd: The client whose members are watched.
        prefix: Key prefix; empty watches the whole keyspace.
        start_revision: First revision to deliver, or None to start from now.
        retry: Bounds of the reconnection attempts after consecutive breaks; defaults to the
            client's policy. The count restarts whenever a stream is established.

    Yields:
        `WatchEvent` per change, and `Relist` after compaction.

    Raises:
        BackendError: etcd cancelled the watch (not retryable), or the retry policy ran out
            (retryable): watch again with `start_revision` set to the last revision seen + 1.

    """
    policy = retry or etcd.retry
    loop = asyncio.get_running_loop()
    next_revision = start_revision
    tries = 0
    breaks_started = 0.0
    while True:
        index, client = await etcd._session()
        endpoint = etcd.endpoints[index]
        call = rpc.WatchStub(client.channel).Watch(
            _requests(prefix, next_revision), metadata=client.metadata
        )
        failure: BackendError | None = None
        cause: BaseException | None = None
        try:
            async for response in call:
                if response.compact_revision:
                    snapshot = await etcd.get_prefix(prefix)
                    next_revision = snapshot.revision + 1
                    yield Relist(snapshot)
                    break
                if response.canceled:
                    reason = response.cancel_reason or "no reason given"
                    raise BackendError(
                        f"etcd {endpoint} cancelled the watch of {prefix!r}: {reason}",
                        backend="etcd",
                        retryable=False,
                    )
                header_revision = int(response.header.revision)
                if response.created:
                    tries = 0
                    if next_revision is None:
                        next_revision = header_revision + 1
                    continue
                if next_revision is None:  # etcd answers `created` first; this is defensive
                    next_revision = 1
                if not response.events:
                    # A progress notification: no change up to header_revision.
                    next_revision = max(next_revision, header_revision + 1)
                    continue
                delivered_below = next_revision
                for event in response.events:
                    revision = int(event.kv.mod_revision)
                    if revision < delivered_below:
                        continue
                    next_revision = revision + 1
                    yield _event(event, revision)
            else:
                failure = BackendError(
                    f"etcd {endpoint} ended the watch stream", backend="etcd", retryable=True
                )
        except ETCD_ERRORS as error:
            failure, cause = _stream_error(error, endpoint), error
        except BackendError as error:
            if not error.retryable:
                raise
            failure, cause = error, error.__cause__
        finally:
            call.cancel()
        if failure is None:
            continue  # relisted: open a new stream after the snapshot
        tries += 1
        if tries == 1:
            breaks_started = loop.time()
        etcd._fail_over(index)
        sleep = policy.next_sleep(tries, loop.time() - breaks_started)
        if sleep is None:
            raise failure from cause
        structlog.get_logger(__name__).info(
            "etcd_watch_reconnect",
            prefix=prefix,
            resume_revision=next_revision,
            attempt=tries,
            error=failure.message,
        )
        await asyncio.sleep(sleep)


async def _requests(prefix: bytes, start_revision: int | None) -> AsyncIterator[Any]:
    yield rpc.WatchRequest(
        create_request=rpc.WatchCreateRequest(
            key=prefix,
            range_end=prefix_end(prefix),
            start_revision=start_revision or 0,
            progress_notify=True,
        )
    )
    # Keep the sending side open for the life of the stream, as etcd's own client does; the call's
    # cancellation ends this wait.
    await asyncio.get_running_loop().create_future()


def _event(event: Any, revision: int) -> WatchEvent:
    deleted = event.type == rpc.Event.DELETE
    return WatchEvent(
        type=EventType.DELETE if deleted else EventType.PUT,
        key=bytes(event.kv.key),
        value=b"" if deleted else bytes(event.kv.value),
        revision=revision,
    )


def _stream_error(error: BaseException, endpoint: str) -> BackendError:
    failure = etcd_error(error, endpoint)
    if isinstance(error, grpc.aio.AioRpcError) and error.code() in _BROKEN_STREAM:
        failure.retryable = True
    return failure
