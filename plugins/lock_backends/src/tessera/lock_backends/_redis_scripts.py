"""Lua scripts of the Redis lock backend; each touches the keys of one lock (one hash tag).

Every script takes KEYS = queue, entries, expiry, token, channel, delay, holds, values and first
drops the entries whose session lease has run out (by Redis's own clock), publishing their
session ids, so a waiter never waits behind a dead session for longer than its lease. A dropped
holder whose entry asked for a lock-delay moves the `delay` key (the Redis time in ms before
which nobody is granted the lock, expiring then) to its lease deadline plus the delay.

Entries are stored as "mode:lock_delay_ms:request_id", the mode of a semaphore's permit being
"permit/<permits>"; a grant held more than once (reentrant) has "count:request_id of the latest
acquisition" in the `holds` hash; the value stored with an entry is in the `values` hash.

The channel carries the session id of each entry that leaves (what waiters wait for), "+session"
when an entry is queued and "=session" when a holder proclaims a value (for observers).
"""

from __future__ import annotations

_PURGE = """
local queue, entries, expiry, channel, delay = KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6]
local holdings, values = KEYS[7], KEYS[8]
local function forget(session)
  redis.call('ZREM', queue, session)
  redis.call('HDEL', entries, session)
  redis.call('ZREM', expiry, session)
  redis.call('HDEL', holdings, session)
  redis.call('HDEL', values, session)
  redis.call('PUBLISH', channel, session)
end
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
local dead = redis.call('ZRANGEBYSCORE', expiry, '-inf', now_ms, 'WITHSCORES')
-- Which dead entries held the lock is decided before any of them leaves the queue.
local delay_until = tonumber(redis.call('GET', delay) or '0')
for i = 1, #dead, 2 do
  local session = dead[i]
  local entry = redis.call('HGET', entries, session) or ''
  local delay_ms = tonumber(string.match(entry, '^[^:]*:(%d+)'))
  local token = redis.call('ZSCORE', queue, session)
  if delay_ms and delay_ms > 0 and token and holds(session, tonumber(token)) then
    delay_until = math.max(delay_until, tonumber(dead[i + 1]) + delay_ms)
  end
end
if delay_until > now_ms then
  redis.call('SET', delay, delay_until)
  redis.call('PEXPIREAT', delay, delay_until)
end
for i = 1, #dead, 2 do
  forget(dead[i])
end
"""

#: ARGV = session, "mode:lock_delay_ms:request_id", request_id, lease ms left, reentrant (1/0),
#: value. Returns {1, token} when queued now, {0, token} for a retry, {2, token, holds} for a
#: (retried) reentrant acquisition by the holder, {-1} when the session is queued under another
#: request, {-2, reason} when the entry cannot join the queue (lock versus semaphore, or another
#: number of permits).
ENQUEUE = (
    _PURGE
    + """
local session, entry, request_id, lease_ms = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local existing = redis.call('HGET', entries, session)
if existing then
  local token = tonumber(redis.call('ZSCORE', queue, session))
  local hold = redis.call('HGET', holdings, session) or '1:'
  local count, last = string.match(hold, '^(%d+):(.*)$')
  count = tonumber(count)
  if request_id ~= '' and last == request_id then return {2, token, count} end
  if request_id ~= '' and existing == entry then return {0, token} end
  local mode = string.match(entry, '^[^:]*')
  if ARGV[5] == '1' and string.match(existing, '^[^:]*') == mode and holds(session, token) then
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
if ARGV[6] ~= '' then redis.call('HSET', values, session, ARGV[6]) end
redis.call('PUBLISH', channel, '+' .. session)
return {1, token}
"""
)

#: Returns {now_ms, delay_until_ms (0: none), session, token, entry, expires_ms, holds, value,
#: session, ...} in queue order.
STATE = (
    _PURGE
    + """
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
"""
)

#: ARGV = session, token. Returns 'released', 'decremented', 'not-holder' or 'already-gone'.
RELEASE = (
    _PURGE
    + """
local session, token = ARGV[1], tonumber(ARGV[2])
local score = redis.call('ZSCORE', queue, session)
if score and tonumber(score) == token then
  if not holds(session, token) then return 'not-holder' end
  local hold = redis.call('HGET', holdings, session)
  if hold then
    local count, last = string.match(hold, '^(%d+):(.*)$')
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
"""
)

#: ARGV = session, token (0: whatever the token). Leaves the queue; returns 1 if it did.
DEQUEUE = (
    _PURGE
    + """
local session, token = ARGV[1], tonumber(ARGV[2])
local score = redis.call('ZSCORE', queue, session)
if not score or (token ~= 0 and tonumber(score) ~= token) then return 0 end
forget(session)
return 1
"""
)

#: ARGV = session, lease ms. Moves the session's entry deadline; returns 1 if it is queued.
EXTEND = (
    _PURGE
    + """
if not redis.call('ZSCORE', expiry, ARGV[1]) then return 0 end
redis.call('ZADD', expiry, 'XX', now_ms + tonumber(ARGV[2]), ARGV[1])
return 1
"""
)

#: ARGV = session, token, value. Stores the value of a holding grant and announces it; returns 1,
#: or 0 when the session does not hold that grant.
PROCLAIM = (
    _PURGE
    + """
local session, token = ARGV[1], tonumber(ARGV[2])
local score = redis.call('ZSCORE', queue, session)
if not score or tonumber(score) ~= token or not holds(session, token) then return 0 end
redis.call('HSET', values, session, ARGV[3])
redis.call('PUBLISH', channel, '=' .. session)
return 1
"""
)

#: No ARGV. Drops the lock's expired entries; returns how many.
REAP = (
    _PURGE
    + """
return #dead / 2
"""
)
