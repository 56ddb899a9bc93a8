from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
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


def _text(value: str | bytes | float) -> str | bytes:
    # str() of an int or a float is the repr() redis-py's encoder sends
    return value if isinstance(value, str | bytes) else str(value)


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
    # One deadline, the connection's socket timeout, bounds the whole exchange (a reconnection,
    # the write and every reply) instead of one per operation: redis-py bounds a write with
    # asyncio.wait_for, which starts a task for it (about 40 µs of CPU an exchange here;
    # docs/benchmarks.md, session 7). The connection's own timeout is lifted while it is ours,
    # then restored.
    timeout_s = connection.socket_timeout

    async def exchange() -> list[object]:
        try:
            async with asyncio.timeout(timeout_s):
                if not connection.is_connected:
                    # connect() asks a Sentinel pool for the master's address (the pool does so
                    # for the connections it hands out); sending would reconnect to the last
                    # address it had
                    await connection.connect()  # type: ignore[no-untyped-call]  # redis-py: untyped
                await connection.send_packed_command(commands)
                results: list[object] = []
                for _ in range(count):
                    try:
                        results.append(await connection.read_response())
                    except redis.exceptions.ResponseError as error:
                        results.append(error)
                return results
        except TimeoutError as error:  # asyncio's: the client retries redis-py's
            raise redis.exceptions.TimeoutError("Timeout exchanging with redis") from error

    async def disconnect(error: Exception) -> None:
        # a failed exchange may have left replies unread: never reuse that connection
        await connection.disconnect()

    connection.socket_timeout = None
    try:
        results: list[object] = await connection.retry.call_with_retry(exchange, disconnect)
    except BaseException:
        # cancelled, or out of retries: replies may be left unread
        await connection.disconnect()
        raise
    finally:
        connection.socket_timeout = timeout_s
    return results


#: A script to run, its KEYS and its ARGV (numbers sent as redis-py sends them).
ScriptCall = tuple[AsyncScript, Sequence[str], Sequence[str | bytes | float]]


class ScriptRunner:
    """Runs registered scripts by packed EVALSHA, on one kept connection whenever it is free.

    A call packs its EVALSHA (`evalsha_command`), sends it and reads the reply itself: no SCRIPT
    EXISTS, no task. It uses the runner's kept connection when no other call is using it (no pool
    lock, no check for stray replies), else a connection of the client's pool, so a call never
    waits behind another one's round trip. A call whose script Redis does not know (NOSCRIPT,
    after a restart or `SCRIPT FLUSH`) did not run: the script is loaded and only the calls
    refused are sent again. Retries on connection errors are the client's (see `PackedExchange`).

    A cancelled caller stops waiting; its command may still run (as with any command whose reply
    is abandoned), and the connection it used is disconnected.

    Concurrency: safe for any number of tasks of the event loop that owns `redis`.

    Args:
        redis: The client: its pool, retry policy and `script_load`.

    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._kept = PackedExchange(redis, keep=True)
        self._pooled = PackedExchange(redis, keep=False)
        self._kept_busy = False

    async def run(
        self, script: AsyncScript, keys: Sequence[str], arguments: Sequence[str | bytes | float]
    ) -> Any:  # what redis-py's parser returns: bytes, int, lists of them, None
        """Run `script` with `keys` and `arguments` and return its reply.

        Numbers among the arguments are sent as redis-py sends them.

        Raises:
            redis.exceptions.ResponseError: The script failed.
            redis.exceptions.RedisError: Redis failed or timed out, out of retries.
            BackendError: The script vanished again after it was loaded.

        """
        [reply] = await self.run_all([(script, keys, arguments)])
        return reply

    async def run_all(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """Run every (script, keys, arguments) call, in order, in one pipeline; return the replies.

        Raises:
            redis.exceptions.ResponseError: A script failed (the first failure; the other calls
                ran).
            redis.exceptions.RedisError: Redis failed or timed out, out of retries.
            BackendError: A script vanished again after it was loaded.

        """
        commands = [
            evalsha_command(script.sha, keys, *map(_text, arguments))
            for script, keys, arguments in calls
        ]
        replies: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        for _ in range(2):
            for index, reply in zip(pending, await self._exchange(commands, pending), strict=True):
                replies[index] = reply
            pending = [i for i in pending if isinstance(replies[i], redis.exceptions.NoScriptError)]
            if not pending:
                for reply in replies:
                    if isinstance(reply, Exception):
                        raise reply
                return replies
            for script in {calls[i][0].sha: calls[i][0] for i in pending}.values():
                await self._redis.script_load(script.script)
        raise BackendError("redis scripts vanished twice in a row", backend="redis")

    async def _exchange(self, commands: list[bytes], indexes: list[int]) -> list[object]:
        packed = b"".join(commands[index] for index in indexes)
        if self._kept_busy:
            return await self._pooled.exchange(packed, len(indexes))
        self._kept_busy = True
        try:
            return await self._kept.exchange(packed, len(indexes))
        finally:
            self._kept_busy = False
