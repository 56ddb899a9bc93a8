"""An event loop that polls for I/O a little while before it sleeps (`busy_poll_us`).

A reply that reaches a sleeping event loop waits for the thread to be woken: on the 2-vCPU VM of
docs/benchmarks.md ("Session 7: event loop busy polling") each such wake-up costs tens of
microseconds, and a lock acquire + release meets several (the client's message, each backend
reply). A loop that keeps polling for a short window after it runs out of work finds those
replies without sleeping, at the price of the CPU it spends polling. CPython's GIL is released
only during each poll, so threads that need it (a backend client that runs its own threads, such
as kazoo) are slowed: the setting is off by default.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Callable


class BusyPollSelector(selectors.DefaultSelector):
    """The platform's default selector, polling without blocking for a window before it blocks.

    Contract: `select(timeout)` returns what the default selector would, and never later than it
    would. When nothing is ready, it polls with a zero timeout until something is or until
    `window_s` (at most `timeout`) has passed, then blocks for the rest of `timeout`. A zero or
    negative `timeout` polls once, as the default selector does.
    """

    def __init__(self, window_s: float) -> None:
        """Build a selector that polls for up to `window_s` seconds before blocking (> 0)."""
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        super().__init__()
        self.window_s = window_s

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        """Return the ready keys, polling for up to `window_s` before blocking; see the class."""
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        window_s = self.window_s if timeout is None else min(self.window_s, timeout)
        deadline = time.perf_counter() + window_s
        while time.perf_counter() < deadline:
            ready = super().select(0)
            if ready:
                return ready
        rest = None if timeout is None else max(0.0, timeout - window_s)
        blocked: list[tuple[selectors.SelectorKey, int]] = super().select(rest)
        return blocked


def event_loop_factory(busy_poll_us: int) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """Return the factory of the event loops `busy_poll_us` asks for, or None for asyncio's own.

    Args:
        busy_poll_us: How long a loop polls before it sleeps, in microseconds; 0: it does not.

    Returns:
        None when `busy_poll_us` is 0 (asyncio's default loop), else a factory of selector event
        loops on a `BusyPollSelector`.

    """
    if busy_poll_us <= 0:
        return None
    window_s = busy_poll_us / 1_000_000

    def new_event_loop() -> asyncio.AbstractEventLoop:
        return asyncio.SelectorEventLoop(BusyPollSelector(window_s))

    return new_event_loop
