from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import structlog

from tessera.client.ratelimit._client import DescriptorLike, Grant, RateLimiter
from tessera.core import TesseraError, ValidationError

_log = structlog.get_logger("tessera.client.ratelimit")

#: How long a quota waits before asking again after a retryable failure of Lease; each further
#: failure in a row doubles it, up to `_MAX_BACKOFF_S`.
_FAILURE_BACKOFF_S = 0.1
_MAX_BACKOFF_S = 1.0


@dataclass(slots=True)
class _Held:
    # One grant being spent: tokens left and the monotonic deadline.
    left: int
    deadline: float
    lease: str


class QuotaLease:
    """Tokens of one descriptor's rule, decided locally: a quota lease that renews itself.

    The quota takes `batch` tokens at a time with `RateLimiter.lease` (the service counts them
    when granted) and `try_acquire` spends them without a call: a subtraction and a clock read.
    Ahead of exhaustion (fewer than `renew_at * batch` tokens left, or `renew_at` of the grant's
    validity left) one renewal is sent in the background, so a steady caller never waits for
    the service. A grant expires `valid_s` after its request was sent (at the latest at the
    end of the rule's window for `fixed_window` and `sliding_window` rules); `close` (also
    leaving `async with`) gives unused tokens back.

    Every built-in algorithm but `concurrency` grants (its units are in flight, not a quota);
    rules with a circuit breaker or an adaptive limit cannot be leased either (see Errors).

    Worst-case overshoot (docs/ratelimit.md): none beyond the rule's own limit for
    `fixed_window` rules, and none against the weighted estimate for `sliding_window` rules
    (tokens are counted in the window they are spent in, and expire locally before the
    service's window ends); for
    `token_bucket`, `gcra` and `leaky_bucket` rules, tokens taken at `t` may be spent until
    `t + ttl_s`, so at most `limit * ttl_s / period` units more than the bucket alone admits
    over any interval (a leaky bucket's leased tokens are not paced: it polices like a token
    bucket). Tokens expire unused rather than late.

    Errors: a renewal that fails with a retryable error (`UnavailableError` while the service
    cannot be reached, `DeadlineExceededError`, ...) is logged and retried 0.1 s later, the wait
    doubling with each failure in a row up to 1 s; meanwhile the quota runs dry and
    `try_acquire` answers False (fail closed locally). A renewal that fails with a permanent
    error (`TesseraError.retryable` False: `ValidationError` on `descriptor` for a rule that
    cannot be leased, `NotFoundError` for an unknown domain, `FailedPreconditionError`, ...)
    stops the quota for good: nothing is renewed again, the tokens held are given back, and
    every later `try_acquire`, `acquire` and `renew` raises that error (entering `async with`
    raises it when the first grant fails so). `close` still works.

    Concurrency: one event loop; `try_acquire` is not thread-safe (it is the hot path).

    Args:
        limiter: The client renewals go through.
        domain: The configuration domain.
        descriptor: What the tokens are for.
        batch: Tokens asked per renewal, >= 1.
        ttl_s: How long a grant may be spent, in (0, 60].
        renew_at: Fraction of a grant (tokens or validity) left at which to renew, in (0, 1).

    Raises:
        ValidationError: `batch`, `ttl_s` or `renew_at` is out of range.

    """

    def __init__(
        self,
        limiter: RateLimiter,
        domain: str,
        descriptor: DescriptorLike,
        *,
        batch: int = 1000,
        ttl_s: float = 1.0,
        renew_at: float = 0.25,
    ) -> None:
        if batch < 1:
            raise ValidationError.for_field("batch", "must be >= 1")
        if not 0 < ttl_s <= 60:
            raise ValidationError.for_field("ttl_s", "must be in (0, 60]")
        if not 0 < renew_at < 1:
            raise ValidationError.for_field("renew_at", "must be in (0, 1)")
        self._limiter = limiter
        self._domain = domain
        self._descriptor = descriptor
        self._batch = batch
        self._ttl_s = ttl_s
        self._renew_at = renew_at
        self._low = max(1, int(batch * renew_at))
        # The grant being spent, flattened into attributes: the hot path reads no object.
        self._left = 0
        self._deadline = 0.0
        self._renew_after = 0.0
        self._lease = ""
        self._next: _Held | None = None
        self._renewal: asyncio.Task[None] | None = None
        self._retry_at = 0.0
        self._failures = 0  # retryable renewal failures in a row
        self._failure: TesseraError | None = None  # the permanent one that stopped the quota
        self._returns: set[asyncio.Task[None]] = set()
        self._closed = False
        # Guards the state changes of the slow paths; a no-op unless threads share the quota
        # (SyncQuotaLease), so the async hot path takes no lock.
        self._mutation: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        #: Tokens granted by the service since the quota was opened.
        self.granted = 0
        #: Tokens given back by `close` and by expiring grants.
        self.given_back = 0

    async def __aenter__(self) -> Self:
        """Take the first grant (it may be empty when nothing is left)."""
        await self.renew()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Give unused tokens back (`close`)."""
        await self.close()

    @property
    def available(self) -> int:
        """Tokens of the current grant still spendable now (0 once it expired)."""
        return self._left if time.monotonic() < self._deadline else 0

    def try_acquire(self, tokens: int = 1) -> bool:
        """Spend `tokens` locally if the current grant (or the renewed one) has them.

        Never waits and never calls the service itself; it may start a renewal in the
        background. Must run on the quota's event loop thread.

        Returns:
            True when the tokens were spent, False when not enough are held right now.

        Raises:
            ValidationError: `tokens` is below 1 or above the batch (field `tokens`), found
                when the current grant cannot pay.
            TesseraError: A renewal failed with a permanent error (see the class): that error,
                from then on.

        """
        left = self._left - tokens
        if 0 <= left < self._left:  # enough held, and tokens >= 1 (else _switch rejects them)
            now = time.monotonic()
            if now < self._deadline:
                self._left = left
                if (
                    (left < self._low or now > self._renew_after)
                    and self._renewal is None
                    and self._next is None
                ):
                    self._start_renewal()
                return True
        return self._switch(tokens)

    async def acquire(self, tokens: int = 1, *, timeout_s: float = 1.0) -> bool:
        """Spend `tokens`, waiting up to `timeout_s` for a renewal when none are held.

        Returns:
            True when spent; False when the rule had none to grant within the timeout (or the
            service could not be reached: retryable errors are retried, not raised).

        Raises:
            ValidationError: `tokens` is out of range (see `try_acquire`).
            TesseraError: A renewal failed with a permanent error (see the class).

        """
        deadline = time.monotonic() + timeout_s
        while not self.try_acquire(tokens):
            now = time.monotonic()
            if now >= deadline or self._closed:
                return False
            renewal = self._renewal
            if renewal is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(renewal), deadline - now)
            else:
                await asyncio.sleep(min(max(self._retry_at - now, 0.001), deadline - now))
        return True

    async def renew(self) -> None:
        """Take a grant now (waiting for it), unless a renewal is already under way.

        A retryable failure is logged, not raised: the quota then holds no new tokens.

        Raises:
            TesseraError: This or an earlier renewal failed with a permanent error.

        """
        self._raise_failure()
        if self._renewal is None:
            self._start_renewal()
        renewal = self._renewal
        if renewal is not None:
            await asyncio.shield(renewal)
        self._raise_failure()

    async def close(self) -> None:
        """Stop renewing and give the unused tokens of held grants back. Idempotent.

        Giving back is best effort: a failure is logged, and the tokens stay counted.
        """
        if self._closed:
            return
        self._closed = True
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal
        self._give_back_held()
        if self._returns:
            await asyncio.gather(*self._returns, return_exceptions=True)

    def _give_back_held(self) -> None:
        with self._mutation:
            held = [_Held(self._left, self._deadline, self._lease), self._next]
            self._left, self._deadline, self._next = 0, 0.0, None
        for grant in held:
            self._give_back(grant)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            # one instance raised again and again: drop the frames of the earlier raises
            raise self._failure.with_traceback(None)

    def _switch(self, tokens: int) -> bool:
        # The current grant cannot pay: move to the renewed one if it can, else renew.
        if not 1 <= tokens <= self._batch:
            # more than a grant holds would renew forever and strand every grant's tokens
            raise ValidationError.for_field("tokens", f"must be in [1, {self._batch}] (the batch)")
        with self._mutation:
            # a stopped quota holds nothing, so every decision comes here (the hot path pays
            # nothing for the check)
            self._raise_failure()
            now = time.monotonic()
            if now >= self._deadline and self._left > 0:
                self._give_back(_Held(self._left, self._deadline, self._lease))
                self._left = 0
            following, self._next = self._next, None
            if following is not None and now < following.deadline:
                self._install(following)
                return self.try_acquire(tokens)
            self._give_back(following)  # expired before it was needed: a bucket takes it back
            if self._renewal is None and now >= self._retry_at and not self._closed:
                self._start_renewal()
            return False

    def _install(self, grant: _Held) -> None:
        self._left, self._deadline, self._lease = grant.left, grant.deadline, grant.lease
        spent_for = grant.deadline - time.monotonic()
        self._renew_after = grant.deadline - spent_for * self._renew_at

    def _start_renewal(self) -> None:
        self._renewal = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        try:
            if self._returns:
                # Tokens on their way back must be there before this grant asks for more.
                await asyncio.gather(*self._returns, return_exceptions=True)
            grant: Grant = await self._limiter.lease(
                self._domain, self._descriptor, self._batch, ttl_s=self._ttl_s
            )
        except TesseraError as error:
            self._failed(error)
            return
        finally:
            self._renewal = None
        self._failures = 0
        held = _Held(grant.granted, grant.sent_at + grant.valid_s, grant.lease)
        with self._mutation:
            self.granted += grant.granted
            if self._closed:
                self._give_back(held)
                return
            if not grant.granted:
                # a denial without a retry time (failing closed) still must not spin
                wait_s = max(grant.decision.retry_after_s, _FAILURE_BACKOFF_S / 10)
                self._retry_at = time.monotonic() + wait_s
                return
            if self._left > 0 and time.monotonic() < self._deadline:
                self._give_back(self._next)  # an explicit renew() may overtake a prefetch
                self._next = held
            else:
                self._install(held)

    def _failed(self, error: TesseraError) -> None:
        if error.retryable:
            wait_s = min(_FAILURE_BACKOFF_S * 2**self._failures, _MAX_BACKOFF_S)
            self._failures += 1
            self._retry_at = time.monotonic() + wait_s
            _log.warning(
                "quota_lease_renewal_failed",
                domain=self._domain,
                error=error.message,
                retry_in_s=wait_s,
            )
            return
        # Asking again would fail the same way: stop, and let the next decision raise it.
        _log.error("quota_lease_stopped", domain=self._domain, error=error.message)
        with self._mutation:  # no thread spends from the held grants once the error is set
            self._failure = error
            self._give_back_held()

    def _give_back(self, grant: _Held | None) -> None:
        # Unused tokens go back in the background: a bucket takes them back, a sliding window
        # off its previous window's weight; a fixed window that is over ignores them.
        if grant is None or grant.left <= 0 or not grant.lease:
            return

        async def give_back() -> None:
            try:
                if await self._limiter.release(
                    self._domain, self._descriptor, grant.lease, unused=grant.left
                ):
                    self.given_back += grant.left
            except TesseraError as error:
                _log.warning("quota_give_back_failed", domain=self._domain, error=error.message)

        self._on_loop(lambda: self._track(asyncio.get_running_loop().create_task(give_back())))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._returns.add(task)
        task.add_done_callback(self._returns.discard)

    def _on_loop(self, action: Callable[[], None]) -> None:
        # The async quota is only ever called on its loop.
        action()


class _SharedQuota(QuotaLease):
    # A QuotaLease on a loop thread that other threads spend from: every state change holds
    # one re-entrant lock, and work for the loop is handed over with call_soon_threadsafe.

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limiter: RateLimiter,
        domain: str,
        descriptor: DescriptorLike,
        *,
        batch: int,
        ttl_s: float,
        renew_at: float,
    ) -> None:
        super().__init__(limiter, domain, descriptor, batch=batch, ttl_s=ttl_s, renew_at=renew_at)
        self._loop = loop
        self._lock = threading.RLock()
        self._mutation = self._lock

    def try_acquire(self, tokens: int = 1) -> bool:
        with self._lock:
            return QuotaLease.try_acquire(self, tokens)  # cheaper than super() on the hot path

    def _start_renewal(self) -> None:
        self._on_loop(self._begin_renewal)

    def _begin_renewal(self) -> None:
        # Several threads may have asked before the loop got to it: one renewal at a time.
        with self._lock:
            if self._renewal is None and not self._closed and self._failure is None:
                super()._start_renewal()

    def _on_loop(self, action: Callable[[], None]) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            action()
        else:
            self._loop.call_soon_threadsafe(action)


class SyncQuotaLease:
    """A `QuotaLease` for threads: `try_acquire` from any thread, renewals on a loop thread.

    Made by `SyncRateLimiter.quota`; the same semantics, renewal, overshoot and errors as
    `QuotaLease`: a permanent error of a renewal is raised by `__enter__` and by every later
    `try_acquire` (in whichever thread calls it) and `acquire`.

    `try_acquire` takes one uncontended lock, so it stays far above 1,000,000 decisions/s in
    one thread; `acquire` and `close` block the calling thread. Use it as a context manager
    (`with limiter.quota(...) as quota:`) or call `close`.

    Concurrency: thread-safe.
    """

    def __init__(
        self, quota: _SharedQuota, run: Callable[[Coroutine[object, object, object]], object]
    ) -> None:
        self._quota = quota
        self._run = run

    def __enter__(self) -> Self:
        """Take the first grant (blocking); raises as `QuotaLease.renew`."""
        self._run(self._quota.renew())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Give unused tokens back (`close`)."""
        self.close()

    @property
    def granted(self) -> int:
        """Tokens granted by the service since the quota was opened."""
        return self._quota.granted

    @property
    def given_back(self) -> int:
        """Tokens given back by `close` and by expiring grants."""
        return self._quota.given_back

    def try_acquire(self, tokens: int = 1) -> bool:
        """See `QuotaLease.try_acquire`; any thread may call it."""
        return self._quota.try_acquire(tokens)

    def acquire(self, tokens: int = 1, *, timeout_s: float = 1.0) -> bool:
        """See `QuotaLease.acquire`; blocks the calling thread up to `timeout_s`."""
        return bool(self._run(self._quota.acquire(tokens, timeout_s=timeout_s)))

    def close(self) -> None:
        """See `QuotaLease.close`; blocks until the unused tokens are given back."""
        self._run(self._quota.close())
