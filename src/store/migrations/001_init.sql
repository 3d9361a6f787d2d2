-- Every event id hive-c0re has accepted from the homeserver (transactions or reconciliation).
-- Synapse restarts its transaction ids at 1 after a restart on sqlite, and can deliver one event
-- in two transactions: the event id is the only safe dedupe key.
CREATE TABLE seen_events (
    event_id    TEXT PRIMARY KEY,
    room_id     TEXT NOT NULL,
    received_us INTEGER NOT NULL
);

-- The durable delivery queue: one row per (agent, event).
CREATE TABLE inbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    agent        TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    room_id      TEXT NOT NULL,
    sender       TEXT NOT NULL,
    body         TEXT NOT NULL,
    origin_ts    INTEGER NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'inflight', 'done', 'dead')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    enqueued_us  INTEGER NOT NULL,
    delivered_us INTEGER,
    done_us      INTEGER,
    error        TEXT,
    UNIQUE (agent, event_id)
);
CREATE INDEX inbox_pending ON inbox (agent, state, id);

-- Room ids of the hive's rooms, by key ('space', 'c0re', 'agent:<name>', ...). Aliases stay the
-- source of truth; this is a cache and a record for `hive status`.
CREATE TABLE rooms (
    key     TEXT PRIMARY KEY,
    alias   TEXT NOT NULL,
    room_id TEXT NOT NULL
);

-- What the core knows of each agent's harness.
CREATE TABLE agents (
    name         TEXT PRIMARY KEY,
    state        TEXT NOT NULL,
    pid          INTEGER,
    brain_notice TEXT,
    updated_us   INTEGER NOT NULL
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
