from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from tessera.core import BackendError, ValidationError
from tessera.core.plugins import (
    GrantingLimiter,
    LimitDecision,
    Limiter,
    QuotaGrant,
    Rate,
    ReleasingLimiter,
)
from tessera.core.redis import ScriptRunner, redis_errors


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One key to evaluate with one algorithm.

    Attributes:
        limiter: The algorithm.
        key: The Redis key holding the state (with a hash tag when Redis runs as a Cluster).
        rate: The allowance of the key.
        cost: Units to take, >= 0; 0 peeks without counting.
        lease: When set, release this lease (a `ReleasingLimiter`'s) instead of taking `cost`.

    """

    limiter: Limiter
    key: str
    rate: Rate
    cost: int
    lease: str = ""

    def arguments(self) -> Sequence[int | float | str]:
        """Encode the script's `ARGV`.

        Raises:
            ValidationError: The rate, cost or lease is out of range, or a lease is given to a
                limiter that hands out none (field `lease`).

        """
        if not self.lease:
            return self.limiter.arguments(self.rate, self.cost)
        if not isinstance(self.limiter, ReleasingLimiter):
            raise ValidationError.for_field("lease", "this algorithm holds no leases")
        return self.limiter.release_arguments(self.rate, self.lease)


# A script, its ARGV, and the ARGV joined for a batch (see below).
_Call = tuple[AsyncScript, Sequence[int | float | str], str]
#: Encoded arguments kept per (limiter, rate, cost): few distinct ones recur on every request.
_MAX_ENCODED = 4096
#: How long a batch waits at most for callers expected to come (see `LimitEvaluator._flush`).
_GATHER_S = 0.003
#: After this long without a batch, a caller is sent at once whatever came before.
_IDLE_S = 0.01

# A limiter's script runs as a function once per key of a batch: KEYS and ARGV are its
# parameters, so the body sees its own key and arguments. The batch's only ARGV holds the
# arguments of every key: records joined by the ASCII record separator, in KEYS order, each the
# key's arguments joined by the unit separator. One argument instead of one per key or per
# value halves what the client encodes, the bulk of a large batch's cost.
#
# The batch replies with ONE flat array: for each key, the length of its reply array and then
# its elements (a reply that is not a plain array, such as an error table, as -1 and the reply).
# An array of arrays costs Redis (6.x) one reply buffer, hence one write(2), per inner array:
# the client then wakes up and reads ten to a hundred times per batch instead of once or twice.
# Each element still goes through Redis's conversion of Lua values, so a key's decoded reply is
# exactly what its script alone would have returned.
_SEPARATOR = "\x1f"
_RECORD = "\x1e"
_BATCH_HEAD = "local function evaluate(KEYS, ARGV)\n"
_BATCH_TAIL = """
end
local replies = {}
local count = 0
local index = 0
for record in string.gmatch(ARGV[1] .. '\\30', '([^\\30]*)\\30') do
  index = index + 1
  local arguments = {}
  for argument in string.gmatch(record .. '\\31', '([^\\31]*)\\31') do
    arguments[#arguments + 1] = argument
  end
  local reply = evaluate({KEYS[index]}, arguments)
  if type(reply) == 'table' and reply.err == nil and reply.ok == nil then
    local size = 0
    while reply[size + 1] ~= nil do size = size + 1 end
    count = count + 1
    replies[count] = size
    for position = 1, size do replies[count + position] = reply[position] end
    count = count + size
  else
    -- false (a nil reply, as Redis sends it), not nil: a nil would end the array here
    if reply == nil then reply = false end
    replies[count + 1] = -1
    replies[count + 2] = reply
    count = count + 2
  end
end
return replies
"""


def _split_replies(flat: object, keys: int) -> list[object]:
    # Undo the batch's flattening (see above): one reply per key.
    if not isinstance(flat, list):
        raise BackendError(f"limiter batch replied {flat!r}", backend="redis", retryable=False)
    replies: list[object] = []
    position, end = 0, len(flat)
    while position < end:
        size = flat[position]
        if size < 0:
            replies.append(flat[position + 1])
            position += 2
        else:
            position += 1
            replies.append(flat[position : position + size])
            position += size
    if len(replies) != keys:
        raise BackendError(f"limiter batch replied {flat!r}", backend="redis", retryable=False)
    return replies


@functools.lru_cache(maxsize=65_536)
def _hash_tag(key: str) -> str:
    # What Redis Cluster hashes: the text between the first "{" and the next "}" if not empty.
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


@dataclass(frozen=True, slots=True)
class _Waiting:
    evaluations: Sequence[Evaluation]
    calls: list[_Call]
    replies: asyncio.Future[list[object]]


class LimitEvaluator:
    """Evaluates any number of keys, with any mix of algorithms, in one Redis round trip.

    A single evaluation goes out as a plain EVALSHA of the limiter's script. Several go out as one
    non-transactional pipeline holding one EVALSHA per algorithm and hash tag, of a batch script
    that runs the limiter's script once per key (so keys of one call share a Cluster slot) and
    replies with one flat array. Each evaluation is atomic on its key; a batch is even atomic as a
    whole. Scripts are registered with `Redis.register_script` (which knows their SHA1) and sent
    packed by a `ScriptRunner` (`tessera.core.redis`): bare EVALSHA on a kept connection, with the
    client's retries; after a Redis restart or `SCRIPT FLUSH` the scripts are loaded and only the
    commands refused with NOSCRIPT (which therefore did not run) are sent again. (A registered
    script run by a redis-py pipeline would ask `SCRIPT EXISTS` first, a second round trip.)

    Concurrent callers share pipelines: at most one is in flight, and the callers that arrive
    while it is go out together in the next (each gets only its own decisions), which turns many
    round trips into one under load. A pipeline also waits, at most 3 ms, until as many callers
    have come as the previous one held (a lone or sequential caller never waits, nor does the
    first after 10 ms without a pipeline). `coalesce=False` sends each call on its own at once.

    Concurrency: safe for any number of tasks of the event loop that owns `redis`.

    Args:
        redis: The client every evaluation runs on.
        coalesce: Whether concurrent callers share pipelines.

    """

    def __init__(self, redis: Redis, *, coalesce: bool = True) -> None:
        self._redis = redis
        self._coalesce = coalesce
        self._scripts: dict[str, AsyncScript] = {}
        self._batches: dict[str, AsyncScript] = {}
        self._encoded: dict[tuple[Limiter, int, float, int, str, int], _Call] = {}
        # The same, by evaluation object: callers reuse theirs (a rule's unit hit), and an id
        # costs less than the signature above. Each entry holds its evaluation, so no other
        # object can take its id while the entry lives.
        self._by_id: dict[int, tuple[Evaluation, _Call]] = {}
        self._waiting: list[_Waiting] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._in_flight = False
        self._flush_scheduled = False
        self._runner = ScriptRunner(redis)
        # the batch being gathered's timer, and how many callers the last batch held
        self._gathering: asyncio.TimerHandle | None = None
        self._expected = 1
        self._last_sent = 0.0  # the event loop's time when the last batch went out

    async def evaluate(self, evaluations: Sequence[Evaluation]) -> list[LimitDecision]:
        """Evaluate every key and return the decisions in the same order.

        An evaluation with a `lease` releases it; its decision is `allowed` iff it was held.

        Raises:
            ValidationError: A rate, cost or lease is out of range (nothing was sent).
            BackendError: Redis failed or timed out (retryable), or a script failed.

        """
        calls = [self._call(item) for item in evaluations]
        if not calls:
            return []
        if self._coalesce:
            replies = await self._queued(evaluations, calls)
        else:
            replies = await self._send(evaluations, calls)
        return [
            item.limiter.decision(item.rate, item.cost, reply)
            for item, reply in zip(evaluations, replies, strict=True)
        ]

    async def _queued(self, evaluations: Sequence[Evaluation], calls: list[_Call]) -> list[object]:
        # At most one pipeline is in flight; callers that arrive meanwhile wait and go out together
        # in the next one. Idle, a call leaves at once; under load, one round trip (two system
        # calls) serves many requests, as envoyproxy/ratelimit's implicit pipelining does.
        loop = asyncio.get_running_loop()
        waiting = _Waiting(evaluations, calls, loop.create_future())
        self._waiting.append(waiting)
        if self._gathering is not None and len(self._waiting) >= self._expected:
            self._gathering.cancel()
            self._flush()
        elif not self._in_flight and not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await waiting.replies

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._waiting:
            return
        # A gRPC server hands the event loop about one new call at a time: sent as soon as
        # they came, most batches held one caller, and each caller paid a round trip of its own
        # (about 180 µs of the service's CPU). So a batch waits for as many callers as the last
        # one held, at most `_GATHER_S`: a lone or sequential caller (last batch: one) never
        # waits, and once the callers have stopped coming the wait ends with its window.
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now - self._last_sent > _IDLE_S:  # a burst long past tells nothing of who comes now
            self._expected = 1
        if self._gathering is None and len(self._waiting) < self._expected:
            self._flush_scheduled = True
            self._gathering = loop.call_later(_GATHER_S, self._flush)
            return
        self._gathering = None
        batch, self._waiting = self._waiting, []
        # a window that ended short lowers the expectation by one only: under load, arrivals
        # are uneven, and dropping it to the short batch's size halved the callers a round trip
        self._expected = max(len(batch), self._expected - 1)
        self._last_sent = now
        self._in_flight = True
        task = asyncio.create_task(self._send_batch(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_batch(self, batch: list[_Waiting]) -> None:
        evaluations = [item for waiting in batch for item in waiting.evaluations]
        calls = [call for waiting in batch for call in waiting.calls]
        try:
            replies = await self._send(evaluations, calls)
        except Exception as error:  # every caller of the batch gets the failure, whatever it is
            for waiting in batch:
                if not waiting.replies.done():
                    waiting.replies.set_exception(error)
        else:
            start = 0
            for waiting in batch:
                end = start + len(waiting.calls)
                if not waiting.replies.done():
                    waiting.replies.set_result(replies[start:end])
                start = end
        finally:
            self._in_flight = False
            self._flush()

    async def _send(self, evaluations: Sequence[Evaluation], calls: list[_Call]) -> list[object]:
        # One key: its limiter's own script. Several: one batch script call per algorithm and
        # hash tag (a Cluster slot), all in one pipeline. The runner packs and sends them, and
        # reloads scripts refused with NOSCRIPT and resends only those.
        with redis_errors("rate limit evaluation"):
            if len(calls) == 1:
                script, arguments, _ = calls[0]
                return [await self._runner.run(script, [evaluations[0].key], arguments)]
            groups: dict[tuple[str, str], list[int]] = {}
            for index, (script, _, _) in enumerate(calls):
                tag = _hash_tag(evaluations[index].key)
                groups.setdefault((script.sha, tag), []).append(index)
            results = await self._runner.run_all(
                [
                    (
                        self._batch(calls[members[0]][0]),
                        [evaluations[index].key for index in members],
                        [_RECORD.join([calls[index][2] for index in members])],
                    )
                    for members in groups.values()
                ]
            )
        replies: list[object] = [None] * len(calls)
        for members, result in zip(groups.values(), results, strict=True):
            for index, reply in zip(members, _split_replies(result, len(members)), strict=True):
                replies[index] = reply
        return replies

    async def grant(
        self, limiter: GrantingLimiter, key: str, rate: Rate, wanted: int
    ) -> QuotaGrant:
        """Take up to `wanted` units of `key` at once, for a client to spend by itself.

        One EVALSHA of the limiter's script, on its own (a grant is rare next to checks).

        Raises:
            ValidationError: The rate or `wanted` is out of range (nothing was sent).
            BackendError: Redis failed or timed out (retryable), or the script failed.

        """
        arguments = limiter.grant_arguments(rate, wanted)
        return limiter.grant(rate, wanted, await self._run(limiter, key, arguments))

    async def give_back(
        self, limiter: GrantingLimiter, key: str, rate: Rate, stamp: str, unused: int
    ) -> LimitDecision:
        """Give the `unused` units of a grant with `stamp` back to `key`.

        Returns:
            `allowed` iff units were given back (not when their window is over), `remaining`
            after it.

        Raises:
            ValidationError: The stamp or `unused` is malformed (nothing was sent).
            BackendError: Redis failed or timed out (retryable), or the script failed.

        """
        arguments = limiter.return_arguments(rate, stamp, unused)
        return limiter.returned(rate, await self._run(limiter, key, arguments))

    async def _run(
        self, limiter: Limiter, key: str, arguments: Sequence[int | float | str]
    ) -> object:
        with redis_errors("rate limit grant"):
            return await self._runner.run(self._script(limiter), [key], arguments)

    async def reset(self, keys: Sequence[str]) -> int:
        """Delete the state of `keys` (each algorithm keeps a key's whole state in that key).

        Returns:
            How many keys existed.

        Raises:
            BackendError: Redis failed or timed out.

        """
        if not keys:
            return 0
        with redis_errors("rate limit reset"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.unlink(key)
                return sum(int(count) for count in await pipe.execute())

    def _batch(self, script: AsyncScript) -> AsyncScript:
        batch = self._batches.get(script.sha)
        if batch is None:
            source = (
                script.script if isinstance(script.script, str) else bytes(script.script).decode()
            )
            batch = self._batches[script.sha] = self._redis.register_script(
                _BATCH_HEAD + source + _BATCH_TAIL
            )
        return batch

    def _call(self, item: Evaluation) -> _Call:
        # Limiters are pure: the same limiter, rate and cost always encode the same ARGV, so it
        # is validated and joined once, not once per key and request.
        known = self._by_id.get(id(item))
        if known is not None:
            return known[1]
        call = self._encode(item)
        if len(self._by_id) >= _MAX_ENCODED:
            self._by_id.clear()
        self._by_id[id(item)] = (item, call)
        return call

    def _encode(self, item: Evaluation) -> _Call:
        if item.lease:
            arguments = item.arguments()
            return self._script(item.limiter), arguments, _SEPARATOR.join(map(str, arguments))
        rate = item.rate  # its fields, not the dataclass: their hashes are computed in C
        signature = (item.limiter, rate.limit, rate.period_s, rate.burst, rate.align, item.cost)
        call = self._encoded.get(signature)
        if call is None:
            arguments = item.arguments()
            joined = _SEPARATOR.join(map(str, arguments))
            if len(self._encoded) >= _MAX_ENCODED:
                self._encoded.clear()
            call = self._encoded[signature] = (self._script(item.limiter), arguments, joined)
        return call

    def _script(self, limiter: Limiter) -> AsyncScript:
        source = limiter.script()
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self._redis.register_script(source)
        return script
