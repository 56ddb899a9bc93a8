from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.connection import DefaultParser
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from tessera.core._errors import BackendError
from tessera.core._settings import TesseraSettings

#: Seconds to connect and to wait for any reply; Redis answers in well under a millisecond, so a
#: reply this late means the server is gone or stalled.
DEFAULT_TIMEOUT_S = 5.0
#: Retries of a command after a connection error or timeout, with jittered exponential backoff.
DEFAULT_RETRIES = 3


def connect_redis(
    source: TesseraSettings | str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    retries: int = DEFAULT_RETRIES,
) -> Redis:
    """Create the asyncio Redis client of a process.

    The client connects lazily and keeps a pool of connections. A command that fails with a
    connection error or a timeout is retried `retries` times on a new connection, sleeping a
    jittered exponential backoff (50 ms doubling up to 1 s) in between, so a Redis restart between
    two calls is invisible to the caller. Replies are parsed by hiredis and returned as bytes.

    Scripts: use `Redis.register_script`; the `AsyncScript` it returns runs EVALSHA and falls back
    to loading the script on NOSCRIPT (after a restart or `SCRIPT FLUSH`).

    Args:
        source: The settings (their `redis_url`) or a `redis://` / `rediss://` / `unix://` URL.
        timeout_s: Connect timeout and per-reply timeout in seconds.
        retries: Retries after the first attempt of each command.

    Returns:
        The client; close it with `await client.aclose()`.

    Raises:
        ValueError: The URL is malformed (from redis-py).

    """
    url = source if isinstance(source, str) else source.redis_url
    # Typed here: some redis-py releases annotate from_url as returning Any.
    client: Redis = Redis.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), retries),
        health_check_interval=30,
        # hiredis when installed, and tessera-core depends on redis[hiredis]; a test pins it.
        parser_class=DefaultParser,
    )
    return client


@contextmanager
def redis_errors(operation: str) -> Iterator[None]:
    """Turn redis-py errors raised inside the block into `BackendError`.

    Connection errors and timeouts are retryable; other Redis errors (a wrong type, a script
    error) are not.

    Args:
        operation: What was being done, for the message (`"rate limit check"`).

    Raises:
        BackendError: With `backend="redis"`, chained to the redis-py error.

    """
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
        raise BackendError(f"redis {operation}: {error}", backend="redis") from error
    except redis.exceptions.RedisError as error:
        raise BackendError(
            f"redis {operation}: {error}", backend="redis", retryable=False
        ) from error
