"""The values a scan has seen so far (uniqueness sets), kept per chunk in Redis for resuming."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# pyarrow ships no type information (no py.typed marker, no stubs package used here).
import pyarrow as pa  # type: ignore[import-untyped]
from redis.asyncio import Redis

from tessera.core.redis import redis_errors

#: Seen values outlive a scan that nobody resumes by this long, then Redis drops them.
_TTL_S = 7 * 24 * 3600


def seen_key(scan_id: str) -> str:
    """Return the Redis hash of one scan's seen values (docs/keyspace.md)."""
    return f"tessera:governance:scan:{scan_id}:seen"


def encode_seen(seen: Mapping[str, pa.Array]) -> bytes:
    """Encode one chunk's seen values (set name -> distinct values) as one Arrow IPC stream.

    CPU-bound; call it off the event loop. Each set becomes a one-row list column, so sets of
    different lengths and types share one record batch.
    """
    batch = pa.record_batch(
        {name: pa.array([values], pa.list_(values.type)) for name, values in seen.items()}
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    data: bytes = sink.getvalue().to_pybytes()
    return data


def decode_seen(data: bytes) -> dict[str, pa.Array]:
    """Decode what `encode_seen` wrote."""
    batch = pa.ipc.open_stream(data).read_next_batch()
    return {name: batch.column(name)[0].values for name in batch.schema.names}


class SeenValues:
    """Per-chunk seen values of scans, in Redis: one hash per scan, one field per chunk.

    The field of chunk `n` written by attempt `a` is `a:n`, so an attempt never overwrites what
    another wrote; a checkpoint names the chunks it covers as segments `[attempt, first, end)`.
    Loading them all and taking the union rebuilds the sets exactly as they stood at the
    checkpoint: values of a chunk written but never checkpointed (the worker died in between)
    are not loaded, and the chunk is read again.

    Args:
        redis: The client; safe for concurrent use from one event loop.

    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def put(self, scan_id: str, attempt: int, chunk: int, data: bytes) -> None:
        """Store one chunk's encoded seen values.

        Raises:
            BackendError: Redis failed.

        """
        key = seen_key(scan_id)
        with redis_errors("scan checkpoint"):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(key, mapping={f"{attempt}:{chunk}": data})
                pipe.expire(key, _TTL_S)
                await pipe.execute()

    async def load(self, scan_id: str, segments: Sequence[Sequence[int]]) -> list[bytes] | None:
        """Return the encoded seen values of every chunk the segments name.

        Returns:
            One value per chunk; None when any is gone (expired or deleted): the caller must then
            start the scan over, since its tallies assume those values.

        Raises:
            BackendError: Redis failed.

        """
        fields = [
            f"{attempt}:{chunk}" for attempt, first, end in segments for chunk in range(first, end)
        ]
        if not fields:
            return []
        with redis_errors("scan resume"):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hmget(seen_key(scan_id), fields)
                (values,) = await pipe.execute()
        found: list[bytes] = [value for value in values if value is not None]
        return found if len(found) == len(fields) else None

    async def drop(self, scan_id: str) -> None:
        """Delete a scan's seen values (it ended).

        Raises:
            BackendError: Redis failed.

        """
        with redis_errors("scan cleanup"):
            await self._redis.delete(seen_key(scan_id))
