-- The forge lanes (docs/forge.md). A webhook delivery is recorded once, by the forge's
-- delivery id, with the event read from its payload (the raw body is not kept); the `forge`
-- task posts it and hands it on, then marks it done in the same transaction as the outbox
-- rows that tell the agents.
CREATE TABLE forge_deliveries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    server      TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    -- The forge's event name (`pull_request`, `issues`, …), for the audit.
    event_name  TEXT NOT NULL,
    -- `forge::webhook::ForgeEvent` as JSON.
    event_json  TEXT NOT NULL,
    received_us INTEGER NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    error       TEXT,
    done_us     INTEGER,
    UNIQUE (server, delivery_id)
);
CREATE INDEX forge_deliveries_pending ON forge_deliveries (state, id);
-- One thread per pull request or issue, in its repository's room: the thread's root event.
CREATE TABLE forge_threads (
    server        TEXT NOT NULL,
    -- `owner/name`, lowercased.
    repo          TEXT NOT NULL,
    number        INTEGER NOT NULL,
    room_id       TEXT NOT NULL,
    root_event_id TEXT NOT NULL,
    created_us    INTEGER NOT NULL,
    PRIMARY KEY (server, repo, number)
);
