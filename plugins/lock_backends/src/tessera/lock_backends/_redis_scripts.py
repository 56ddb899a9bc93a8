"""Lua scripts of the Redis lock backend; each touches the keys of one lock (one hash tag).

`RENEW` alone touches a session's keys instead (they share the session's hash tag). Every other
script takes KEYS = queue, entries, expiry, token, channel, delay, holds, values and first drops
the entries whose session lease has run out (by Redis's own clock), so a waiter never waits
behind a dead session for longer than its lease. A dropped holder whose entry asked for a
lock-delay moves the `delay` key (the Redis time in ms before which nobody is granted the lock,
expiring then) to its lease deadline plus the delay.

Entries are stored as "mode:lock_delay_ms:request_id", the mode of a semaphore's permit being
"permit/<permits>"; a grant held more than once (reentrant) has "count:request_id of the latest
acquisition" in the `holds` hash; the value stored with an entry is in the `values` hash.

The channel carries, once per script that removed entries, a JSON hand-off note
`{"l": [[session, token], ...], "g": [[session, token], ...], "d": ms}`: the entries that left,
the entries that hold the lock now and did not before, and how long a lock-delay still holds
the lock back (0: none). A waiter named in "g" knows it holds the lock without reading anything.
Besides, "+session" announces an entry queued and "=session" a value proclaimed (for observers).
"""

from __future__ import annotations

_PRELUDE = """
local queue, entries, expiry, channel, delay = KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6]
local holdings, values = KEYS[7], KEYS[8]
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function kind(session)
  return string.match(redis.call('HGET', entries, session) or '', '^[^:]*')
end
-- The rule of LockQueue: exclusive alone, shared behind shared only, a permit behind fewer than
-- `permits` permits of the same semaphore only.
local function holds(session, token)
  local mode = kind(session)
  local earlier = redis.call('ZRANGEBYSCORE', queue, '-inf', '(' .. token)
  if mode == 'exclusive' then return #earlier == 0 end
  local permits = tonumber(string.match(mode, '^permit/(%d+)$'))
  if permits and #earlier >= permits then return false end
  for _, other in ipairs(earlier) do
    if kind(other) ~= mode then return false end
  end
  return true
end
-- The holders, by token, as {session, token, token as Redis wrote it}: the longest prefix of the
-- queue the same rule grants, read in batches so that a long queue of waiters is not read.
local function holders()
  local found, first, start = {}, nil, 0
  while true do
    local batch = redis.call('ZRANGE', queue, start, start + 63, 'WITHSCORES')
    for i = 1, #batch, 2 do
      local mode = kind(batch[i])
      if first == nil then
        first = mode
      elseif first == 'exclusive' or mode ~= first then
        return found
      end
      local permits = tonumber(string.match(mode, '^permit/(%d+)$'))
      if permits and #found >= permits then return found end
      table.insert(found, {batch[i], tonumber(batch[i + 1]), batch[i + 1]})
    end
    if #batch < 128 then return found end
    start = start + 64
  end
end
-- Entries that left during this script, and the last holder's token before the first left.
local left, held_before = {}, nil
local function forget(session)
  if held_before == nil then
    local found = holders()
    held_before = #found > 0 and found[#found][2] or 0
  end
  table.insert(left, {session, redis.call('ZSCORE', queue, session) or '0'})
  redis.call('ZREM', queue, session)
  redis.call('HDEL', entries, session)
  redis.call('ZREM', expiry, session)
  redis.call('HDEL', holdings, session)
  redis.call('HDEL', values, session)
end
local function delay_ms()
  return math.max(tonumber(redis.call('GET', delay) or '0') - now_ms, 0)
end
-- Publishes the hand-off note of the entries that left (see the module's docstring) and returns
-- it ('' when none left). Entries only leave, so whoever holds now and did not before has a
-- token above every earlier holder's.
local function announce()
  if #left == 0 then return '' end
  local granted = {}
  for _, holder in ipairs(holders()) do
    if holder[2] > held_before then table.insert(granted, {holder[1], holder[3]}) end
  end
  local note = cjson.encode({l = left, g = granted, d = delay_ms()})
  redis.call('PUBLISH', channel, note)
  return note
end
-- {1, token, 0} when the entry of `session` holds the lock; else {0, token, ms}: when to look
-- again unless told earlier, the lock-delay's end when only that holds it back, or else the
-- earliest lease deadline of the entries up to it (only they can end its wait unannounced, and
-- their deadlines only move later).
local function turn(session, token)
  if holds(session, token) then
    local held_back = delay_ms()
    if held_back > 0 then return {0, token, held_back} end
    return {1, token, 0}
  end
  local earliest = nil
  for _, other in ipairs(redis.call('ZRANGEBYSCORE', queue, '-inf', token)) do
    local deadline = tonumber(redis.call('ZSCORE', expiry, other))
    if earliest == nil or deadline < earliest then earliest = deadline end
  end
  return {0, token, math.max((earliest or now_ms) - now_ms, 0)}
end
local dead = redis.call('ZRANGEBYSCORE', expiry, '-inf', now_ms, 'WITHSCORES')
-- Which dead entries held the lock is decided before any of them leaves the queue.
local delay_until = tonumber(redis.call('GET', delay) or '0')
for i = 1, #dead, 2 do
  local session = dead[i]
  local entry = redis.call('HGET', entries, session) or ''
  local lock_delay_ms = tonumber(string.match(entry, '^[^:]*:(%d+)'))
  local token = redis.call('ZSCORE', queue, session)
  if lock_delay_ms and lock_delay_ms > 0 and token and holds(session, tonumber(token)) then
    delay_until = math.max(delay_until, tonumber(dead[i + 1]) + lock_delay_ms)
  end
end
if delay_until > now_ms then
  redis.call('SET', delay, delay_until)
  redis.call('PEXPIREAT', delay, delay_until)
end
for i = 1, #dead, 2 do
  forget(dead[i])
end
local function run()
"""


def _script(body: str, *, with_note: bool = False) -> str:
    """Return a script running `body`, then announcing what left, whichever way `body` returns.

    With `with_note`, the script answers {body's reply, the note published or ''}, so that the
    caller can hand the lock to its own process's waiters before the message reaches them.
    """
    reply = "{result, note}" if with_note else "result"
    return f"{_PRELUDE}{body}\nend\nlocal result = run()\nlocal note = announce()\nreturn {reply}\n"


#: KEYS = the lock's keys, then the session's key and its set of locks (in the session's hash
#: slot, not the lock's: the backend runs on one Redis, or a Sentinel-managed primary, never on a
#: Redis Cluster, which `connect_redis` refuses anyway). ARGV = session,
#: "mode:lock_delay_ms:request_id", request_id, reentrant (1/0), value, wait (1, or 0 to try
#: only), the encoded lock name. Returns {1, token, 0} when the entry holds the lock (queued now
#: or by an earlier try of the same request), {0, token, ms} when it waits (ms: when to look again
#: unless told, as `turn` says), {2, token, holds} for a (retried) reentrant acquisition by the
#: holder, {3} when a try (wait 0) is refused: nothing is queued then, {-1} when the session is
#: queued under another request, {-2, reason} when the entry cannot join the queue (lock versus
#: semaphore, or another number of permits), {-3} when the session does not exist.
ENQUEUE = _script("""
local session, entry, request_id = ARGV[1], ARGV[2], ARGV[3]
local waits = ARGV[6] == '1'
local lease_ms = redis.call('PTTL', KEYS[9])
if lease_ms <= 0 then return {-3} end
local existing = redis.call('HGET', entries, session)
if existing then
  local token = tonumber(redis.call('ZSCORE', queue, session))
  local hold = redis.call('HGET', holdings, session) or '1:'
  local count, last = string.match(hold, '^(%d+):(.*)$')
  count = tonumber(count)
  if request_id ~= '' and last == request_id then return {2, token, count} end
  if request_id ~= '' and existing == entry then
    local reply = turn(session, token)
    if reply[1] == 0 and not waits then
      forget(session)
      return {3}
    end
    return reply
  end
  local mode = string.match(entry, '^[^:]*')
  if ARGV[4] == '1' and string.match(existing, '^[^:]*') == mode and holds(session, token) then
    redis.call('HSET', holdings, session, (count + 1) .. ':' .. request_id)
    return {2, token, count + 1}
  end
  return {-1}
end
local mode = string.match(entry, '^[^:]*')
local permit = string.match(mode, '^permit/') ~= nil
for _, other in ipairs(redis.call('ZRANGE', queue, 0, -1)) do
  local other_mode = kind(other)
  if (string.match(other_mode, '^permit/') ~= nil) ~= permit then
    return {-2, 'the name is used as a lock and as a semaphore at once'}
  end
  if permit and other_mode ~= mode then
    return {-2, 'the semaphore has ' .. string.sub(other_mode, 8) .. ' permits, not '
      .. string.sub(mode, 8)}
  end
end
local token = redis.call('INCR', KEYS[4])
redis.call('ZADD', queue, token, session)
redis.call('HSET', entries, session, entry)
redis.call('ZADD', expiry, now_ms + lease_ms, session)
if ARGV[5] ~= '' then redis.call('HSET', values, session, ARGV[5]) end
local reply = turn(session, token)
if reply[1] == 0 and not waits then
  -- Refused without a trace: the entry was last in the queue, so nobody's turn changes.
  redis.call('ZREM', queue, session)
  redis.call('HDEL', entries, session)
  redis.call('ZREM', expiry, session)
  redis.call('HDEL', values, session)
  return {3}
end
-- The session's set of locks, which its keep-alive and close walk.
redis.call('SADD', KEYS[10], ARGV[7])
redis.call('PEXPIRE', KEYS[10], lease_ms)
redis.call('PUBLISH', channel, '+' .. session)
return reply
""")

#: ARGV = session, token. Returns what ENQUEUE returns for a waiting entry ({1, token, 0} or
#: {0, token, ms}), or {-1} when the session's entry with that token is gone.
CHECK = _script("""
local session = ARGV[1]
local score = redis.call('ZSCORE', queue, session)
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return {-1} end
return turn(session, tonumber(score))
""")

#: Returns {now_ms, delay_until_ms (0: none), session, token, entry, expires_ms, holds, value,
#: session, ...} in queue order.
STATE = _script("""
local result = {now_ms, tonumber(redis.call('GET', delay) or '0')}
local queued = redis.call('ZRANGE', queue, 0, -1, 'WITHSCORES')
for i = 1, #queued, 2 do
  local session = queued[i]
  table.insert(result, session)
  table.insert(result, queued[i + 1])
  table.insert(result, redis.call('HGET', entries, session))
  table.insert(result, redis.call('ZSCORE', expiry, session))
  table.insert(result, tonumber(string.match(redis.call('HGET', holdings, session) or '1', '^%d+')))
  table.insert(result, redis.call('HGET', values, session) or '')
end
return result
""")

#: ARGV = session, token, and optionally the request id of a reentrant acquisition whose hold is
#: given back because its caller never got it (then a retry of that request holds again, rather
#: than being answered as already done). Returns {outcome, note}: the outcome is 'released',
#: 'decremented', 'not-holder' or 'already-gone', the note what was published ('' for none).
RELEASE = _script(
    """
local session, token = ARGV[1], tonumber(ARGV[2])
local score = redis.call('ZSCORE', queue, session)
if score and tonumber(score) == token then
  if not holds(session, token) then return 'not-holder' end
  local hold = redis.call('HGET', holdings, session)
  if hold then
    local count, last = string.match(hold, '^(%d+):(.*)$')
    if ARGV[3] and ARGV[3] ~= '' and last == ARGV[3] then last = '' end
    if tonumber(count) > 2 then
      redis.call('HSET', holdings, session, (tonumber(count) - 1) .. ':' .. last)
    else
      redis.call('HDEL', holdings, session)
    end
    return 'decremented'
  end
  forget(session)
  return 'released'
end
if #redis.call('ZRANGEBYSCORE', queue, token, token) > 0 then return 'not-holder' end
return 'already-gone'
""",
    with_note=True,
)

#: ARGV = session, token (0: whatever the token). Leaves the queue; returns {1 if it did (else
#: 0), the note published or ''}.
DEQUEUE = _script(
    """
local session, token = ARGV[1], tonumber(ARGV[2])
local score = redis.call('ZSCORE', queue, session)
if not score or (token ~= 0 and tonumber(score) ~= token) then return 0 end
forget(session)
return 1
""",
    with_note=True,
)

#: ARGV = session, lease ms. Moves the session's entry deadline; returns 1 if it is queued.
EXTEND = _script("""
if not redis.call('ZSCORE', expiry, ARGV[1]) then return 0 end
redis.call('ZADD', expiry, 'XX', now_ms + tonumber(ARGV[2]), ARGV[1])
return 1
""")

#: KEYS = the session's key and its set of locks. Renews both with the session's TTL (the
#: session key's value, in ms); returns {ttl_ms, lock name, ...}: the names (encoded) of the locks
#: the session holds or waits for, whose entries the caller then extends; {0} when the session
#: is gone.
RENEW = """
local ttl_ms = redis.call('GET', KEYS[1])
if not ttl_ms then return {0} end
redis.call('PEXPIRE', KEYS[1], ttl_ms)
redis.call('PEXPIRE', KEYS[2], ttl_ms)
local reply = redis.call('SMEMBERS', KEYS[2])
table.insert(reply, 1, tonumber(ttl_ms))
return reply
"""

#: ARGV = session, token, value. Stores the value of a holding grant and announces it; returns 1,
#: or 0 when the session does not hold that grant.
PROCLAIM = _script("""
local session, token = ARGV[1], tonumber(ARGV[2])
local score = redis.call('ZSCORE', queue, session)
if not score or tonumber(score) ~= token or not holds(session, token) then return 0 end
redis.call('HSET', values, session, ARGV[3])
redis.call('PUBLISH', channel, '=' .. session)
return 1
""")

#: No ARGV. Drops the lock's expired entries; returns how many.
REAP = _script("""
return #dead / 2
""")
