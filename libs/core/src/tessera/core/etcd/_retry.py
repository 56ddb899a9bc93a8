from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failed etcd call is retried: exponential backoff with full jitter, bounded twice.

    The sleep before retry `n` (1-based) is uniform in `[0, min(max_backoff_s, initial_backoff_s *
    multiplier ** (n - 1))]`, so clients that failed together do not retry together. Retries stop
    after `attempts` tries in all, or when the next sleep would end past `deadline_s` after the
    first try started, whichever comes first.

    Attributes:
        attempts: Tries in all, including the first; 1 never retries.
        initial_backoff_s: Bound of the first sleep, seconds.
        max_backoff_s: Cap on the bound of any sleep, seconds.
        multiplier: Growth of the bound per retry.
        deadline_s: Time budget from the first try, seconds.

    """

    attempts: int = 6
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 2.0
    multiplier: float = 2.0
    deadline_s: float = 15.0

    def backoff(self, retry: int) -> float:
        """Return the sleep before retry number `retry` (1-based), jittered."""
        bound = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (retry - 1))
        return random.uniform(0.0, bound)

    def next_sleep(self, tries: int, elapsed_s: float) -> float | None:
        """Decide whether to try again after `tries` failed tries and `elapsed_s` seconds.

        Returns:
            The sleep before the next try, or None when the policy is exhausted.

        """
        if tries >= self.attempts:
            return None
        sleep = self.backoff(tries)
        return None if elapsed_s + sleep > self.deadline_s else sleep


#: A policy that never retries, for callers that run their own loop (lease keep-alive).
NO_RETRY = RetryPolicy(attempts=1)
