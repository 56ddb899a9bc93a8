"""Tessera's built-in rate-limit algorithms, registered in the entry-point group `tessera.limiters`.

Each algorithm is a `tessera.core.plugins.Limiter`: a Lua script atomic on one Redis key, timed by
the Redis server's clock. `LimitEvaluator` runs any mix of them for many keys in one round trip::

    evaluator = LimitEvaluator(redis)
    [decision] = await evaluator.evaluate(
        [Evaluation(TokenBucket(), "{tenant-a}:api", Rate(limit=100, period_s=1.0), cost=1)]
    )

| entry point      | class           | admits                                               |
|------------------|-----------------|------------------------------------------------------|
| `fixed_window`   | `FixedWindow`   | `limit` per epoch-aligned window, counting denials   |
| `sliding_window` | `SlidingWindow` | `limit` per weighted pair of windows                 |
| `token_bucket`   | `TokenBucket`   | bursts of `limit`, refilled at `limit / period`      |
| `gcra`           | `Gcra`          | same counts as `token_bucket`, one timestamp of state |
| `leaky_bucket`   | `LeakyBucket`   | same counts as `token_bucket`, paced by `delay_s`    |
| `concurrency`    | `Concurrency`   | `limit` units in flight, leased until released      |

The class docstrings state the exact semantics the conformance kit
(`tessera.testing.conformance.limiters`) checks.
"""

from tessera.limiters._concurrency import Concurrency
from tessera.limiters._evaluate import Evaluation, LimitEvaluator
from tessera.limiters._fixed_window import FixedWindow
from tessera.limiters._gcra import Gcra
from tessera.limiters._leaky_bucket import LeakyBucket
from tessera.limiters._sliding_window import SlidingWindow
from tessera.limiters._token_bucket import TokenBucket

__all__ = [
    "Concurrency",
    "Evaluation",
    "FixedWindow",
    "Gcra",
    "LeakyBucket",
    "LimitEvaluator",
    "SlidingWindow",
    "TokenBucket",
]
