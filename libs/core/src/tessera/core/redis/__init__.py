"""Redis access: one asyncio client factory and the mapping of its errors to the error tree.

Redis holds hot counters (rate limits, lock tokens) and is the Celery broker. Services create one
client per process with `connect_redis(settings)` and wrap the calls whose failure a client sees in
`with redis_errors("what"):` so it surfaces as a retryable `BackendError`.
"""

from tessera.core.redis._connect import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    connect_redis,
    redis_errors,
)

__all__ = ["DEFAULT_RETRIES", "DEFAULT_TIMEOUT_S", "connect_redis", "redis_errors"]
