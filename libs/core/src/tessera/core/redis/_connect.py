from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import DefaultParser
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialWithJitterBackoff

from tessera.core._errors import BackendError, ConfigError
from tessera.core._settings import TesseraSettings
from tessera.core.redis._topology import parse_redis_url

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

    A `redis+sentinel://host:port,host:port/<master>[/<db>]` URL (`rediss+sentinel://` for TLS)
    asks those Sentinels where the master is, and asks again after a failover: the retries above
    then land on the promoted replica. A Redis Cluster URL is refused here, since a cluster
    client is another type with other limits; use `connect_redis_cluster`.

    Scripts: use `Redis.register_script`; the `AsyncScript` it returns runs EVALSHA and falls back
    to loading the script on NOSCRIPT (after a restart or `SCRIPT FLUSH`).

    Args:
        source: The settings (their `redis_url`) or a `redis://`, `rediss://`, `unix://` or
            Sentinel URL.
        timeout_s: Connect timeout and per-reply timeout in seconds (to Sentinels too).
        retries: Retries after the first attempt of each command.

    Returns:
        The client; close it with `await client.aclose()`.

    Raises:
        ValueError: The URL is malformed (from redis-py).
        ConfigError: A Sentinel URL without a master name, or a Redis Cluster URL.

    """
    url = source if isinstance(source, str) else source.redis_url
    options: dict[str, Any] = {
        "socket_connect_timeout": timeout_s,
        "socket_timeout": timeout_s,
        "retry": Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), retries),
        "health_check_interval": 30,
        # hiredis when installed, and tessera-core depends on redis[hiredis]; a test pins it.
        "parser_class": DefaultParser,
    }
    topology = parse_redis_url(url)
    match topology.kind:
        case "standalone":
            # Typed here: some redis-py releases annotate from_url as returning Any.
            client: Redis = Redis.from_url(url, **options)
            return client
        case "sentinel":
            # redis-py leaves Sentinel's constructor unannotated.
            sentinel = Sentinel(  # type: ignore[no-untyped-call]
                list(topology.nodes),
                sentinel_kwargs={"socket_connect_timeout": timeout_s, "socket_timeout": timeout_s},
            )
            master: Redis = sentinel.master_for(
                topology.master_name,
                redis_class=_SentinelManagedRedis,
                db=topology.db,
                username=topology.username,
                password=topology.password,
                ssl=topology.tls,
                **options,
            )
            return master
        case "cluster":
            raise ConfigError(
                "connect_redis takes a standalone or Sentinel URL; a redis+cluster:// URL needs "
                "connect_redis_cluster",
                source="redis_url",
            )


class _SentinelManagedRedis(Redis):
    """A master client that also closes its Sentinel clients when it is closed."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        pool = self.connection_pool
        if isinstance(pool, SentinelConnectionPool):
            # The pool asks these for the master; without this their connections would leak.
            for sentinel in pool.sentinel_manager.sentinels:
                await sentinel.aclose()


def connect_redis_cluster(
    source: TesseraSettings | str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    retries: int = DEFAULT_RETRIES,
) -> RedisCluster:
    """Create an asyncio Redis Cluster client from a `redis+cluster://host:port,...` URL.

    The client learns the slot map from the nodes named and follows MOVED and ASK redirections.
    Commands and scripts that touch several keys need them in one slot: give the keys one hash
    tag (`tessera:{domain}:...`). Retries, timeouts and the parser are as `connect_redis`'s.

    Args:
        source: The settings (their `redis_url`) or a `redis+cluster://` / `rediss+cluster://`
            URL.
        timeout_s: Connect timeout and per-reply timeout in seconds.
        retries: Retries after the first attempt of each command.

    Returns:
        The client; close it with `await client.aclose()`.

    Raises:
        ConfigError: The URL is not a cluster URL, or is malformed.

    """
    url = source if isinstance(source, str) else source.redis_url
    topology = parse_redis_url(url)
    if topology.kind != "cluster":
        raise ConfigError("connect_redis_cluster takes a redis+cluster:// URL", source="redis_url")
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in topology.nodes],
        username=topology.username,
        password=topology.password,
        ssl=topology.tls,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), retries),
        health_check_interval=30,
    )


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
