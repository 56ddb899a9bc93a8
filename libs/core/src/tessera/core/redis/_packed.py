from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.exceptions
from opentelemetry import trace
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript

from tessera.core._errors import BackendError

# RESP2, the protocol redis-py speaks by default: a command is an array of bulk strings.
# redis-py's `pack_command` encodes, measures and copies every argument of every call (about
# 0.7 µs a key); keys and script digests recur call after call, so their encodings are kept and
# a command is one join.


def _bulk_string(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value  # UTF-8, strict, as redis-py
    return b"$%d\r\n%b\r\n" % (len(data), data)


#: Keys and script digests recur on every call: their encodings are kept (bounded).
_known_bulk_string = functools.lru_cache(maxsize=65_536)(_bulk_string)


def evalsha_command(sha: str, keys: Sequence[str], *arguments: str | bytes) -> bytes:
    """Return `EVALSHA sha len(keys) *keys *arguments` as one RESP2 command.

    Byte for byte what redis-py's `pack_command` sends for the same arguments.
    """
    return b"".join(
        [
            b"*%d\r\n$7\r\nEVALSHA\r\n" % (len(keys) + len(arguments) + 3),
            _known_bulk_string(sha),
            _bulk_string(str(len(keys))),
            *map(_known_bulk_string, keys),
            *map(_bulk_string, arguments),  # arguments seldom recur: not kept
        ]
    )


def _text(value: str | bytes | int) -> str | bytes:
    return value if isinstance(value, str | bytes) else str(value)  # an int in decimal


_tracer = trace.get_tracer("tessera.core.redis")


class PackedExchange:
    """Sends packed commands on a connection of a client's pool and reads every reply.

    What a non-transactional pipeline does, without packing anything: an error reply comes back
    as its exception in the list, connection errors and timeouts are retried as the client's other
    commands are (after a retry the commands are sent again, so they must bear it, as with any
    redis-py command), and a connection whose replies may be left unread (an exchange that failed
    or was cancelled) is disconnected, never reused. Each exchange is a CLIENT span named
    ``EVALSHA`` (redis-py's instrumentation does not see it), without the statement.

    With `keep`, the exchange takes one connection of the pool for itself (no pool lock, no
    zero-timeout read for stray replies on each exchange): its caller then runs one exchange at
    a time. Without, each exchange takes a connection of the pool and gives it back.

    Concurrency: with `keep`, one exchange at a time; without, any number of tasks of the event
    loop that owns `redis`.

    Args:
        redis: The client whose pool and retry policy the exchanges use.
        keep: Whether to keep one connection (see above).

    """

    def __init__(self, redis: Redis, *, keep: bool) -> None:
        self._pool = redis.connection_pool
        self._keep = keep
        self._connection: AbstractConnection | None = None

    async def exchange(self, commands: bytes, count: int) -> list[object]:
        """Send `commands` (`count` packed commands) at once and return their `count` replies.

        Raises:
            redis.exceptions.RedisError: The connection failed, out of retries, or timed out.

        """
        with _tracer.start_as_current_span("EVALSHA", kind=trace.SpanKind.CLIENT) as span:
            if span.is_recording():
                span.set_attribute("db.system", "redis")
                span.set_attribute("db.redis.pipeline_length", count)
            if self._keep:
                if self._connection is None:
                    self._connection = await self._pool.get_connection()  # type: ignore[no-untyped-call]  # redis-py: untyped
                return await _exchange_on(self._connection, commands, count)
            connection = await self._pool.get_connection()  # type: ignore[no-untyped-call]  # redis-py: untyped
            try:
                return await _exchange_on(connection, commands, count)
            finally:
                await self._pool.release(connection)


async def _exchange_on(connection: AbstractConnection, commands: bytes, count: int) -> list[object]:
    async def exchange() -> list[object]:
        await connection.send_packed_command(commands)
        results: list[object] = []
        for _ in range(count):
            try:
                results.append(await connection.read_response())
            except redis.exceptions.ResponseError as error:
                results.append(error)
        return results

    async def disconnect(error: Exception) -> None:
        # a failed exchange may have left replies unread: never reuse that connection
        await connection.disconnect()

    try:
        results: list[object] = await connection.retry.call_with_retry(exchange, disconnect)
    except BaseException:
        # cancelled, or out of retries: replies may be left unread
        await connection.disconnect()
        raise
    return results


#: A script to run, its KEYS and its ARGV (ints are sent in decimal).
ScriptCall = tuple[AsyncScript, Sequence[str], Sequence[str | bytes | int]]


@dataclass(frozen=True, slots=True)
class _Queued:
    script: AsyncScript
    command: bytes
    reply: asyncio.Future[Any]


class ScriptPipe:
    """Runs registered scripts by EVALSHA on one kept connection; concurrent calls share a pipeline.

    A call made while no exchange is in flight sends its packed EVALSHA itself and reads the
    reply (no SCRIPT EXISTS, no pooled connection taken and given back, no task). Calls made
    while an exchange is in flight queue and then go out together, from a task, as one
    pipeline, each getting its own reply, so that one round trip serves all of them. A call whose
    script Redis does not know (NOSCRIPT, after a restart or `SCRIPT FLUSH`) did not run: the
    script is loaded and only those calls are sent again. Retries on connection errors are the
    client's (see `PackedExchange`).

    A cancelled caller stops waiting; its command still runs if it was sent or queued (as with
    any command whose reply is abandoned); a pipeline goes on for the other callers in it.

    Concurrency: safe for any number of tasks of the event loop that owns `redis`.

    Args:
        redis: The client: its pool, retry policy and `script_load`.

    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._exchange = PackedExchange(redis, keep=True)
        self._busy = False  # an exchange is in flight: calls queue
        self._queue: list[_Queued] = []
        self._sender: asyncio.Task[None] | None = None

    async def run(
        self, script: AsyncScript, keys: Sequence[str], arguments: Sequence[str | bytes | int]
    ) -> Any:  # what redis-py's parser returns: bytes, int, lists of them, None
        """Run `script` with `keys` and `arguments` (ints sent in decimal) and return its reply.

        Raises:
            redis.exceptions.ResponseError: The script failed.
            redis.exceptions.RedisError: Redis failed or timed out, out of retries.
            BackendError: The script vanished again after it was loaded.

        """
        [reply] = await self.run_all([(script, keys, arguments)])
        return reply

    async def run_all(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """Run every (script, keys, arguments) call in one pipeline and return their replies.

        The calls go out together, in order, in one exchange (or with others queued meanwhile).

        Raises:
            redis.exceptions.ResponseError: A script failed (the first failure; the other calls
                ran).
            redis.exceptions.RedisError: Redis failed or timed out, out of retries.
            BackendError: A script vanished again after it was loaded.

        """
        loop = asyncio.get_running_loop()
        batch = [
            _Queued(
                script,
                evalsha_command(script.sha, keys, *map(_text, arguments)),
                loop.create_future(),
            )
            for script, keys, arguments in calls
        ]
        if self._busy:
            self._queue.extend(batch)
            if len(batch) == 1:
                return [await batch[0].reply]
            return list(await asyncio.gather(*(queued.reply for queued in batch)))
        self._busy = True
        try:
            await self._send_batch(batch)
        finally:
            self._busy = False
            if self._queue:
                self._busy = True
                self._sender = asyncio.create_task(self._send(), name="redis-script-pipe")
        failures = [queued.reply.exception() for queued in batch]  # each one retrieved
        for failure in failures:
            if failure is not None:
                raise failure
        return [queued.reply.result() for queued in batch]

    async def aclose(self) -> None:
        """Stop sending: queued calls are cancelled. The connection is the pool's."""
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender

    async def _send(self) -> None:
        batch: list[_Queued] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self._send_batch(batch)
                except Exception as error:  # each caller of the batch gets the failure
                    for queued in batch:
                        if not queued.reply.done():
                            queued.reply.set_exception(error)
        finally:
            self._busy = False
            self._sender = None
            abandoned, self._queue = [*batch, *self._queue], []
            for queued in abandoned:  # left undone only when cancelled
                queued.reply.cancel()

    async def _send_batch(self, batch: list[_Queued]) -> None:
        pending = batch
        for _ in range(2):
            commands = b"".join(queued.command for queued in pending)
            replies = await self._exchange.exchange(commands, len(pending))
            missing: list[_Queued] = []
            for queued, reply in zip(pending, replies, strict=True):
                if isinstance(reply, redis.exceptions.NoScriptError):
                    missing.append(queued)
                elif queued.reply.done():
                    continue
                elif isinstance(reply, Exception):
                    queued.reply.set_exception(reply)
                else:
                    queued.reply.set_result(reply)
            if not missing:
                return
            for script in {queued.script.sha: queued.script for queued in missing}.values():
                await self._redis.script_load(script.script)
            pending = missing
        raise BackendError("redis scripts vanished twice in a row", backend="redis")
