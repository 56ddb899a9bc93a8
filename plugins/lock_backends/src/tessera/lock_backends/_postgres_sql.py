"""SQL of the PostgreSQL lock backend (schema `tessera_lock`)."""

from __future__ import annotations

#: LISTEN/NOTIFY channel: each payload is `{"name": ..., "session": ...}` of an entry that left,
#: with `"event": "queued"` or `"proclaimed"` for an entry queued or a value proclaimed.
CHANNEL = "tessera_lock_left"

_TABLES = """
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

# Drops the entries of expired sessions, announcing each in `purged` (which must be read for the
# announcements to be sent). A dropped holder that asked for a lock-delay holds its lock back until
# its expiry plus the delay; whether it held is read from the snapshot before the DELETE, which
# every part of the statement sees. Common-table expressions, so that the acquisition and the
# release fold the purge into their first statement instead of paying a round trip for it.
_PURGING = f"""
dead AS (
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
), purged AS (
    SELECT count(pg_notify('{CHANNEL}',
                           json_build_object('name', name, 'session', session_id)::text)) AS n
    FROM dead
)"""
#: Purges expired entries; returns how many.
PURGE = f"WITH {_PURGING} SELECT n FROM purged"

# `take_free` grants a lock nobody queues for in one statement (no transaction round trips):
# under the lock's advisory lock, and with a fresh snapshot for each statement of the function,
# it queues the session's entry only when the session is live and the lock has no entry and no
# lock-delay. It returns the new token, or NULL when the caller must take the general way.
SCHEMA = f"""{_TABLES}
CREATE OR REPLACE FUNCTION tessera_lock.take_free(
    lock_name text, for_session text, lock_mode text, request text, delay_ms bigint,
    semaphore integer, entry_value bytea
) RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    purged_count bigint;
    queued bigint;
BEGIN
    WITH {_PURGING} SELECT n INTO purged_count FROM purged;
    PERFORM pg_advisory_xact_lock(hashtext(lock_name));
    IF NOT EXISTS (
        SELECT 1 FROM tessera_lock.sessions s
        WHERE s.id = for_session AND s.expires_at > clock_timestamp()
    ) OR EXISTS (
        SELECT 1 FROM tessera_lock.entries e WHERE e.name = lock_name
    ) OR EXISTS (
        SELECT 1 FROM tessera_lock.delays d
        WHERE d.name = lock_name AND d.until > clock_timestamp()
    ) THEN
        RETURN NULL;
    END IF;
    INSERT INTO tessera_lock.entries
        (name, session_id, mode, request_id, token, lock_delay_ms, permits, value)
    VALUES (lock_name, for_session, lock_mode, request, nextval('tessera_lock.tokens'), delay_ms,
            semaphore, entry_value)
    RETURNING token INTO queued;
    PERFORM pg_notify('{CHANNEL}', json_build_object('name', lock_name, 'session', for_session,
                                                     'event', 'queued')::text);
    RETURN queued;
END
$fn$;
"""
#: Queues the session's entry if the lock is free (see `take_free`); returns its token or NULL.
TAKE_FREE = "SELECT tessera_lock.take_free($1, $2, $3, $4, $5, $6, $7)"
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
#: Opens an acquisition (in a transaction): purges, takes the lock's advisory transaction lock
#: (as `LOCK_NAME`) and returns the milliseconds session $2 has left (NULL when it is not live).
ENTER = f"""
WITH {_PURGING}
SELECT (SELECT extract(epoch FROM expires_at - clock_timestamp()) * 1000
        FROM tessera_lock.sessions WHERE id = $2 AND expires_at > clock_timestamp()) AS live_ms,
       pg_advisory_xact_lock(hashtext($1)) IS NULL AS locked
FROM purged
"""
#: Queues an entry with the next token and announces it; returns the token.
INSERT_ENTRY = f"""
WITH queued AS (
    INSERT INTO tessera_lock.entries
        (name, session_id, mode, request_id, token, lock_delay_ms, permits, value)
    VALUES ($1, $2, $3, $4, nextval('tessera_lock.tokens'), $5, $6, $7)
    RETURNING name, session_id, token
)
SELECT token, pg_notify('{CHANNEL}', json_build_object('name', name, 'session', session_id,
                                                         'event', 'queued')::text)
FROM queued
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
_DELAY_LEFT_S = """(
    SELECT extract(epoch FROM d.until - clock_timestamp()) FROM tessera_lock.delays d
    WHERE d.name = $1 AND d.until > clock_timestamp()
)"""
_ENTRIES = """
SELECT e.session_id, e.mode, e.token, e.holds, e.permits, e.value, e.request_id, e.lock_delay_ms,
       e.reentry_request_id, extract(epoch FROM s.expires_at - clock_timestamp()) AS expires_in_s
FROM tessera_lock.entries e JOIN tessera_lock.sessions s ON s.id = e.session_id
WHERE e.name = $1
"""
_LIVE_ENTRIES = f"{_ENTRIES} AND s.expires_at > clock_timestamp()"
#: The live entries of one lock, each row also carrying the seconds a lock-delay still holds
#: the lock back (NULL when none does).
QUEUE = f"SELECT q.*, {_DELAY_LEFT_S} AS delay_left_s FROM ({_LIVE_ENTRIES}) q ORDER BY q.token"
#: After `ENTER`: the lock-delay left and the lock's entries, in one row of NULL entry columns
#: when there are none. `ENTER` purged what had expired: an entry whose session expired since
#: is read as the holder or waiter it was then, so that the session's own entry is always found.
JOINING = f"""
SELECT {_DELAY_LEFT_S} AS delay_left_s, q.*
FROM (SELECT) one LEFT JOIN LATERAL ({_ENTRIES}) q ON true
"""
#: Purges, and releases the grant ($2, $3) in one statement when it is certainly held: its session
#: is live, it holds once, and no live entry is before it (the head of a queue holds in every mode).
#: Returns 1 when it released, else 0 (the caller takes the general way).
RELEASE_HEAD = f"""
WITH {_PURGING}, gone AS (
    DELETE FROM tessera_lock.entries e
    WHERE e.name = $1 AND e.session_id = $2 AND e.token = $3 AND e.holds = 1
      AND EXISTS (
          SELECT 1 FROM tessera_lock.sessions s WHERE s.id = $2 AND s.expires_at > clock_timestamp()
      )
      AND NOT EXISTS (
          SELECT 1 FROM tessera_lock.entries o JOIN tessera_lock.sessions s ON s.id = o.session_id
          WHERE o.name = $1 AND o.token < $3 AND s.expires_at > clock_timestamp()
      )
    RETURNING e.name, e.session_id
)
SELECT (SELECT n FROM purged) AS purged,
       (SELECT count(pg_notify('{CHANNEL}',
                               json_build_object('name', name, 'session', session_id)::text))
        FROM gone) AS released
"""
#: Purges, then reads the lock's live entries for a release (one row of NULLs when there are none).
RELEASING = f"WITH {_PURGING} SELECT q.* FROM purged LEFT JOIN LATERAL ({_LIVE_ENTRIES}) q ON true"
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
