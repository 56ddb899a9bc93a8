"""SQL of the PostgreSQL lock backend (schema `tessera_lock`)."""

from __future__ import annotations

#: LISTEN/NOTIFY channel: each payload is `{"name": ..., "session": ...}` of an entry that left,
#: with `"event": "queued"` or `"proclaimed"` for an entry queued or a value proclaimed.
CHANNEL = "tessera_lock_left"

SCHEMA = """
SELECT pg_advisory_xact_lock(hashtext('tessera_lock schema'));
CREATE SCHEMA IF NOT EXISTS tessera_lock;
CREATE SEQUENCE IF NOT EXISTS tessera_lock.tokens;
CREATE TABLE IF NOT EXISTS tessera_lock.sessions (
    id text PRIMARY KEY,
    ttl_ms bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS tessera_lock.entries (
    name text NOT NULL,
    session_id text NOT NULL REFERENCES tessera_lock.sessions (id) ON DELETE CASCADE,
    mode text NOT NULL,
    request_id text NOT NULL,
    token bigint NOT NULL,
    PRIMARY KEY (name, session_id)
);
CREATE INDEX IF NOT EXISTS entries_by_token ON tessera_lock.entries (name, token);
ALTER TABLE tessera_lock.entries ADD COLUMN IF NOT EXISTS lock_delay_ms bigint NOT NULL DEFAULT 0;
-- Reentrant holds of a holder, and the request id of the latest acquisition that added one.
ALTER TABLE tessera_lock.entries ADD COLUMN IF NOT EXISTS holds integer NOT NULL DEFAULT 1;
ALTER TABLE tessera_lock.entries
    ADD COLUMN IF NOT EXISTS reentry_request_id text NOT NULL DEFAULT '';
-- Semaphores: the number of permits of a permit entry (0 for locks); values stored with entries.
ALTER TABLE tessera_lock.entries ADD COLUMN IF NOT EXISTS permits integer NOT NULL DEFAULT 0;
ALTER TABLE tessera_lock.entries ADD COLUMN IF NOT EXISTS value bytea NOT NULL DEFAULT '';
CREATE TABLE IF NOT EXISTS tessera_lock.delays (
    name text PRIMARY KEY,
    until timestamptz NOT NULL
);
"""

# Drops the entries of expired sessions (announcing each), then the sessions themselves. A dropped
# holder that asked for a lock-delay holds its lock back until its expiry plus the delay; whether
# it held is read from the snapshot before the DELETE, which every part of the statement sees.
PURGE = f"""
WITH dead AS (
    DELETE FROM tessera_lock.entries e USING tessera_lock.sessions s
    WHERE e.session_id = s.id AND s.expires_at <= clock_timestamp()
    RETURNING e.name, e.session_id, e.mode, e.token, e.lock_delay_ms, s.expires_at
), delayed AS (
    INSERT INTO tessera_lock.delays (name, until)
    SELECT d.name, max(d.expires_at + d.lock_delay_ms * interval '1 millisecond')
    FROM dead d
    WHERE d.lock_delay_ms > 0 AND NOT EXISTS (
        SELECT 1 FROM tessera_lock.entries o
        WHERE o.name = d.name AND o.token < d.token
          AND (d.mode = 'exclusive' OR o.mode = 'exclusive')
    )
    GROUP BY d.name
    ON CONFLICT (name) DO UPDATE SET until = greatest(delays.until, excluded.until)
)
SELECT pg_notify('{CHANNEL}', json_build_object('name', name, 'session', session_id)::text)
FROM dead
"""
PURGE_SESSIONS = """
WITH over AS (DELETE FROM tessera_lock.delays WHERE until <= clock_timestamp())
DELETE FROM tessera_lock.sessions WHERE expires_at <= clock_timestamp()
"""

OPEN_SESSION = """
INSERT INTO tessera_lock.sessions (id, ttl_ms, expires_at)
VALUES ($1, $2::bigint, clock_timestamp() + $2::bigint * interval '1 millisecond')
"""
KEEP_ALIVE = """
UPDATE tessera_lock.sessions SET expires_at = clock_timestamp() + ttl_ms * interval '1 millisecond'
WHERE id = $1 AND expires_at > clock_timestamp()
RETURNING ttl_ms
"""
SESSION_TTL_MS = """
SELECT greatest(extract(epoch FROM expires_at - clock_timestamp()) * 1000, 0)
FROM tessera_lock.sessions WHERE id = $1
"""
SESSION_LIVE_MS = """
SELECT extract(epoch FROM expires_at - clock_timestamp()) * 1000
FROM tessera_lock.sessions WHERE id = $1 AND expires_at > clock_timestamp()
"""
LEAVE_ALL = f"""
WITH gone AS (
    DELETE FROM tessera_lock.entries WHERE session_id = $1 RETURNING name, session_id
)
SELECT pg_notify('{CHANNEL}', json_build_object('name', name, 'session', session_id)::text)
FROM gone
"""
CLOSE_SESSION = "DELETE FROM tessera_lock.sessions WHERE id = $1"

#: Serialises the writes of one lock, so that tokens become visible in the order they were drawn.
LOCK_NAME = "SELECT pg_advisory_xact_lock(hashtext($1))"
FIND_ENTRY = """
SELECT mode, request_id, token, lock_delay_ms, holds, reentry_request_id
FROM tessera_lock.entries WHERE name = $1 AND session_id = $2
"""
INSERT_ENTRY = """
INSERT INTO tessera_lock.entries
    (name, session_id, mode, request_id, token, lock_delay_ms, permits, value)
VALUES ($1, $2, $3, $4, nextval('tessera_lock.tokens'), $5, $6, $7)
RETURNING token
"""
#: Announces a change other than a departure ($2 = session, $3 = "queued" or "proclaimed").
ANNOUNCE = f"""
SELECT pg_notify('{CHANNEL}', json_build_object('name', $1::text, 'session', $2::text,
                                                'event', $3::text)::text)
"""
#: Stores the value of one grant ($3 = token).
PROCLAIM = """
UPDATE tessera_lock.entries SET value = $4 WHERE name = $1 AND session_id = $2 AND token = $3
"""
#: The live entries of one lock, each row also carrying the seconds a lock-delay still holds
#: the lock back (NULL when none does).
QUEUE = """
SELECT e.session_id, e.mode, e.token, e.holds, e.permits, e.value,
       extract(epoch FROM s.expires_at - clock_timestamp()) AS expires_in_s,
       (SELECT extract(epoch FROM d.until - clock_timestamp()) FROM tessera_lock.delays d
        WHERE d.name = $1 AND d.until > clock_timestamp()) AS delay_left_s
FROM tessera_lock.entries e JOIN tessera_lock.sessions s ON s.id = e.session_id
WHERE e.name = $1 AND s.expires_at > clock_timestamp()
ORDER BY e.token
"""
#: Adds (or with $4 = -1 removes) one hold of a grant; $3 is the acquisition's request id.
CHANGE_HOLDS = """
UPDATE tessera_lock.entries
SET holds = holds + $4::integer,
    reentry_request_id = CASE WHEN $4::integer > 0 THEN $3 ELSE reentry_request_id END
WHERE name = $1 AND session_id = $2
RETURNING holds
"""
NAMES = """
SELECT DISTINCT name FROM tessera_lock.entries WHERE starts_with(name, $1) ORDER BY name
"""
DELETE_ENTRY = f"""
WITH gone AS (
    DELETE FROM tessera_lock.entries WHERE name = $1 AND session_id = $2 AND token = $3
    RETURNING name, session_id
)
SELECT pg_notify('{CHANNEL}', json_build_object('name', name, 'session', session_id)::text)
FROM gone
"""
