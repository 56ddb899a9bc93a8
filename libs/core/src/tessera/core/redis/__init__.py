"""Redis access: one asyncio client factory and the mapping of its errors to the error tree.

Redis holds hot counters (rate limits, lock tokens) and is the Celery broker. Services create one
client per process with `connect_redis(settings)` and wrap the calls whose failure a client sees in
`with redis_errors("what"):` so it surfaces as a retryable `BackendError`.

Besides one server (`redis://`), `connect_redis` reaches a Sentinel-managed master
(`redis+sentinel://s1:26379,s2:26379/<master>/0`) and `connect_redis_cluster` a Redis Cluster
(`redis+cluster://n1:6379,n2:6379`). `celery_broker` translates a URL into kombu's form; kombu has
no Cluster transport, so the Celery broker is a standalone or Sentinel-managed Redis.

Hot paths that run Lua scripts pack their commands themselves (`evalsha_command`) and send them
with `PackedExchange`, or through a `ScriptRunner`, which uses one kept connection while it is free
and a pooled one otherwise, and resends only the commands refused with NOSCRIPT.
"""

from tessera.core.redis._connect import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    connect_redis,
    connect_redis_cluster,
    redis_errors,
)
from tessera.core.redis._packed import PackedExchange, ScriptCall, ScriptRunner, evalsha_command
from tessera.core.redis._topology import (
    CLUSTER_SCHEMES,
    SENTINEL_SCHEMES,
    CeleryBroker,
    RedisTopology,
    celery_broker,
    parse_redis_url,
)

__all__ = [
    "CLUSTER_SCHEMES",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT_S",
    "SENTINEL_SCHEMES",
    "CeleryBroker",
    "PackedExchange",
    "RedisTopology",
    "ScriptCall",
    "ScriptRunner",
    "celery_broker",
    "connect_redis",
    "connect_redis_cluster",
    "evalsha_command",
    "parse_redis_url",
    "redis_errors",
]
