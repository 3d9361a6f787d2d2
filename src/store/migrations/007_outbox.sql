-- A request is posted only once it is complete (snapshot taken, config validated): filing
-- writes the row first, with complete = 0.
ALTER TABLE approvals ADD COLUMN complete INTEGER NOT NULL DEFAULT 1;
-- Whether the requesting agent was told how its request ended (rows from before: nothing owed).
ALTER TABLE approvals ADD COLUMN outcome_told INTEGER NOT NULL DEFAULT 1;

-- What the core must post and may not lose (a reminder due, an operator's answer, a request's
-- outcome, a crash report): written in the same sqlite transaction as the change it reports,
-- marked sent only after the homeserver took it. A deterministic txn id makes a re-send after a
-- crash the same event.
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    txn_id     TEXT NOT NULL UNIQUE,
    -- The room, by the core's key ('agent:<name>', 'c0re', ...).
    room_key   TEXT NOT NULL,
    -- The event content, JSON.
    content    TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    state      TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_us    INTEGER NOT NULL,
    sent_us    INTEGER,
    error      TEXT
);
CREATE INDEX outbox_pending ON outbox (state, next_us);

-- A core event (`org.hyperhive.event` of a message the core itself sent into an inbox), handed
-- to the agent as structured data: no Matrix sender can set this column.
ALTER TABLE inbox ADD COLUMN hive_event TEXT;

-- Agents' own uids (the hive as root, agents unsandboxed): the same uid at every start.
CREATE TABLE agent_uids (
    name TEXT PRIMARY KEY,
    uid  INTEGER NOT NULL UNIQUE
);

-- What a turn's side effects returned (a message sent, a question asked, a request filed), by
-- the agent's message, the call and how many such calls came before it in the turn: a turn run
-- again after a crash gets the recorded answer instead of doing it twice.
CREATE TABLE tool_effects (
    agent      TEXT NOT NULL,
    inbox_id   INTEGER NOT NULL,
    key        TEXT NOT NULL,
    occurrence INTEGER NOT NULL,
    response   TEXT NOT NULL,
    ts_us      INTEGER NOT NULL,
    PRIMARY KEY (agent, inbox_id, key, occurrence)
);
