from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tessera.core.redis import DEFAULT_TIMEOUT_S

# An idle connection is pinged after this long, and counted lost when the ping is not answered
# within as long again (no message is lost silently on a half-open connection for longer).
_IDLE_S = 5.0
# Longest wait for a subscription to be confirmed: a reconnection may take a connect timeout
# and a few retries.
_SUBSCRIBE_TIMEOUT_S = 2 * DEFAULT_TIMEOUT_S
_PING = b""  # an outbox item that is not a channel: ping the server


@dataclass(frozen=True, slots=True)
class Handoff:
    """What a hand-off note of a lock's channel says about one waiter's entry.

    Attributes:
        token: The entry's token (a note about an earlier entry of the same session has another).
        granted: True when the entry holds the lock now; False when it left the queue.
        delay_s: Seconds a lock-delay still holds the lock back (0: none).

    """

    token: int
    granted: bool
    delay_s: float


class ChannelListener:
    """One waiter's or observer's place on a lock's channel; made by `LockChannels.listening`.

    A waiter (`session_id` set) is handed the `Handoff`s that name its session; an observer
    (`session_id` None) is woken by every message. Both are woken with None when the connection
    was lost (messages may have been lost with it: read the lock again).
    """

    def __init__(
        self,
        channels: LockChannels,
        channel: bytes,
        session_id: str | None,
        subscription: _Subscription | None,
    ) -> None:
        self.channel = channel
        self.session_id = session_id
        self._channels = channels
        self._subscription = subscription
        self._notes: deque[Handoff | None] = deque()
        self._arrived = asyncio.Event()
        #: Whether every message published after this listener was made reaches it: true when the
        #: channel was subscribed (and confirmed) already, for another listener of this process.
        self.covered = subscription is not None and subscription.confirmed.is_set()
        if subscription is not None:
            subscription.add(self)

    async def subscribed(self) -> None:
        """Return once the channel is subscribed: what is published from now on reaches this.

        Raises:
            redis.exceptions.TimeoutError: The subscription was not confirmed in time (Redis is
                unreachable).

        """
        subscription = self._subscription
        if subscription is None:
            subscription = self._subscription = self._channels.attach(self.channel, self)
        if not subscription.confirmed.is_set():
            try:
                async with asyncio.timeout(_SUBSCRIBE_TIMEOUT_S):
                    await subscription.confirmed.wait()
            except TimeoutError as error:
                raise RedisTimeoutError("lock channel subscription not confirmed") from error

    async def next(self, deadline: float | None) -> Handoff | None:
        """Return the next note, or None when the loop's time reaches `deadline` first.

        None also when the connection was lost, and for an observer on every message.
        """
        if not self._notes:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self._arrived.wait()
        return self._notes.popleft() if self._notes else None

    def notify(self, note: Handoff | None) -> None:
        """Queue a note for `next` (None: look again)."""
        if note is None and self._notes and self._notes[-1] is None:
            return  # one "look again" stands for several
        self._notes.append(note)
        self._arrived.set()

    def close(self) -> None:
        """Leave the channel; its subscription ends with its last listener."""
        if self._subscription is not None:
            self._channels.detach(self.channel, self._subscription, self)
            self._subscription = None


class _Subscription:
    """One channel's subscription on the shared connection.

    `wanted` says whether it should be subscribed (it has listeners); `sent` what was last sent
    for it on the current connection, and `pending` how many of those commands Redis has not
    confirmed yet: it is subscribed once the last one is confirmed, so a quick unsubscribe and
    subscribe again never passes for subscribed before Redis did both.
    """

    __slots__ = ("confirmed", "listeners", "pending", "sent", "wanted")

    def __init__(self) -> None:
        #: By session (None: observers), so that a note reaches its waiters without a scan of all
        #: (the lock service waits for all its clients in one process).
        self.listeners: dict[str | None, set[ChannelListener]] = {}
        self.wanted = False
        self.sent = False
        self.pending = 0
        self.confirmed = asyncio.Event()

    def add(self, listener: ChannelListener) -> None:
        self.listeners.setdefault(listener.session_id, set()).add(listener)

    def discard(self, listener: ChannelListener) -> None:
        group = self.listeners.get(listener.session_id, set())
        group.discard(listener)
        if not group:
            self.listeners.pop(listener.session_id, None)

    def everyone(self) -> list[ChannelListener]:
        return [listener for group in self.listeners.values() for listener in group]


class LockChannels:
    """The one pubsub connection of a Redis lock backend, shared by all its waiters and observers.

    A lock's channel is subscribed while the lock has listeners in this process that asked for it
    (`ChannelListener.subscribed`), and unsubscribed when the last one leaves. One task reads the
    connection and dispatches each message to the listeners of its channel (a hand-off note to
    the waiters it names, every message to observers); another sends the (un)subscriptions in
    order. A lost connection is opened again and every wanted channel subscribed again; the
    listeners are then woken with None, since messages may have been lost meanwhile.

    Concurrency: one event loop; both tasks start with the first subscription.

    Args:
        redis: The backend's client: the connection is made from its pool's settings (outside the
            pool, since it never returns to it).

    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._subscriptions: dict[bytes, _Subscription] = {}
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._connection: AbstractConnection | None = None
        self._connected = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @contextlib.contextmanager
    def listening(self, channel: bytes, session_id: str | None) -> Iterator[ChannelListener]:
        """Listen to `channel` for `session_id`'s hand-offs (None: every message) in the block.

        The listener joins the channel's subscription if there is one (see
        `ChannelListener.covered`); it subscribes only when asked (`subscribed`), so that a lock
        granted at once costs no subscription.
        """
        subscription = self._subscriptions.get(channel)
        joined = subscription if subscription is not None and subscription.wanted else None
        listener = ChannelListener(self, channel, session_id, joined)
        try:
            yield listener
        finally:
            listener.close()

    def attach(self, channel: bytes, listener: ChannelListener) -> _Subscription:
        """Add `listener` to the channel's subscription, subscribing if needed."""
        subscription = self._subscriptions.setdefault(channel, _Subscription())
        subscription.add(listener)
        if not subscription.wanted:
            self.want(channel, subscription)
        return subscription

    def want(self, channel: bytes, subscription: _Subscription) -> None:
        """Have the channel subscribed (the tasks start with the first subscription)."""
        subscription.wanted = True
        self._outbox.put_nowait(channel)
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._read(), name="redis-lock-channels-read"),
                asyncio.create_task(self._write(), name="redis-lock-channels-write"),
            ]

    def detach(
        self, channel: bytes, subscription: _Subscription, listener: ChannelListener
    ) -> None:
        """Remove `listener`; unsubscribe the channel when it was the last one."""
        subscription.discard(listener)
        if not subscription.listeners and subscription.wanted:
            subscription.wanted = False
            self._outbox.put_nowait(channel)

    async def close(self) -> None:
        """Stop both tasks and close the connection."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def _read(self) -> None:
        """Connect, dispatch what arrives, and connect again when the connection is lost."""
        backoff = 0.05
        while True:
            # redis-py leaves make_connection and connect unannotated.
            pool = self._redis.connection_pool
            connection: AbstractConnection = pool.make_connection()  # type: ignore[no-untyped-call]
            try:
                await connection.connect()  # type: ignore[no-untyped-call]
                self._connected_to(connection)
                backoff = 0.05
                await self._dispatch(connection)
            except (RedisError, OSError):
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
            finally:
                self._lost()
                await connection.disconnect(nowait=True)

    def _connected_to(self, connection: AbstractConnection) -> None:
        self._connection = connection
        for channel, subscription in list(self._subscriptions.items()):
            if subscription.wanted:
                self._outbox.put_nowait(channel)
            else:
                del self._subscriptions[channel]
        self._connected.set()

    def _lost(self) -> None:
        """Forget what the lost connection was subscribed to; tell every listener to look."""
        self._connected.clear()
        self._connection = None
        for subscription in self._subscriptions.values():
            subscription.sent = False
            subscription.pending = 0
            subscription.confirmed.clear()
            for listener in subscription.everyone():
                listener.notify(None)

    async def _dispatch(self, connection: AbstractConnection) -> None:
        pinged = False
        while True:
            response: Any = await connection.read_response(timeout=_IDLE_S)
            if response is None:  # idle that long
                if pinged:
                    raise RedisTimeoutError("the lock channels' connection does not answer")
                pinged = True
                self._outbox.put_nowait(_PING)
                continue
            pinged = False
            if not isinstance(response, list):
                continue  # PONG while subscribed to nothing
            kind = response[0]
            if kind == b"message":
                self.deliver(response[1], response[2])
            elif kind in (b"subscribe", b"unsubscribe"):
                self._confirm(response[1])

    def _confirm(self, channel: bytes) -> None:
        subscription = self._subscriptions.get(channel)
        if subscription is None:
            return
        subscription.pending -= 1
        if subscription.pending > 0:
            return
        if subscription.sent:
            subscription.confirmed.set()
        elif not subscription.wanted:
            del self._subscriptions[channel]

    def deliver(self, channel: bytes, data: bytes) -> None:
        """Hand a message of `channel` (a script's note, b"" for none) to the channel's listeners.

        Called for each message that arrives, and by a caller that got the note in a script's
        reply already: a waiter takes the first note that grants it the lock, and ignores the
        second.
        """
        if not data:
            return
        subscription = self._subscriptions.get(channel)
        if subscription is None:
            return
        for observer in subscription.listeners.get(None, ()):
            observer.notify(None)
        for session_id, handoff in read_note(data).items():
            for waiter in subscription.listeners.get(session_id, ()):
                waiter.notify(handoff)

    async def _write(self) -> None:
        """Send the (un)subscriptions the subscriptions want, in the order they were asked for."""
        while True:
            item = await self._outbox.get()
            await self._connected.wait()
            connection = self._connection
            assert connection is not None  # set while connected
            if item == _PING:
                command: tuple[str, ...] = ("PING",)
            else:
                subscription = self._subscriptions.get(item)
                if subscription is None or subscription.sent == subscription.wanted:
                    continue
                subscription.sent = subscription.wanted
                subscription.pending += 1
                # Unconfirmed until Redis confirmed this command too (and an unsubscription
                # under way is no subscription for a listener that comes now).
                subscription.confirmed.clear()
                command = ("SUBSCRIBE" if subscription.sent else "UNSUBSCRIBE", item.decode())
            # A failed send means a lost connection, which the reader notices and repairs.
            with contextlib.suppress(RedisError, OSError):
                await connection.send_command(*command, check_health=False)
            # The send runs in asyncio.wait_for, which on Python 3.11 swallows a cancellation
            # that comes as the send completes: `close` would then wait for this task forever.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError


def read_note(data: bytes) -> dict[str, Handoff]:
    """Read a hand-off note (see `_redis_scripts`) by session; {} for other messages."""
    if not data.startswith(b"{"):
        return {}
    handoffs = {}
    try:
        note = json.loads(data)
        delay_s = note["d"] / 1000
        # cjson encodes an empty Lua table as an object.
        for key, granted in (("l", False), ("g", True)):
            for session, token in note[key] if isinstance(note[key], list) else ():
                handoffs[session] = Handoff(int(token), granted, delay_s)
    except (ValueError, KeyError, TypeError):
        # Not the scripts' note (anyone may publish on the channel): nobody is told anything,
        # and the reader, which every waiter depends on, goes on.
        return {}
    return handoffs
