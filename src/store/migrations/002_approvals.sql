-- Approval requests: the record of what was asked and decided. The message in #hive-approvals
-- is only a view of it (messages can be edited; this cannot).
CREATE TABLE approvals (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL CHECK (kind IN ('apply_commit', 'init_config')),
    agent         TEXT NOT NULL,
    sha           TEXT NOT NULL,
    requester     TEXT NOT NULL,
    summary       TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'pending' CHECK (state IN
                  ('pending', 'approved', 'applying', 'applied', 'failed', 'denied', 'expired', 'cancelled')),
    required      INTEGER NOT NULL,
    created_us    INTEGER NOT NULL,
    -- By the core's clock, never an event's timestamp.
    expires_us    INTEGER NOT NULL,
    -- The request message in #hive-approvals, once posted.
    request_event TEXT UNIQUE,
    decided_us    INTEGER,
    reason        TEXT,
    deploy        INTEGER
);
CREATE INDEX approvals_state ON approvals (state, id);

-- Reactions that counted as votes, by reaction event id (a redaction names only the reaction).
CREATE TABLE approval_votes (
    reaction_event TEXT PRIMARY KEY,
    approval_id    INTEGER NOT NULL REFERENCES approvals (id),
    voter          TEXT NOT NULL,
    verdict        TEXT NOT NULL CHECK (verdict IN ('approve', 'deny')),
    withdrawn      INTEGER NOT NULL DEFAULT 0,
    ts_us          INTEGER NOT NULL
);
CREATE INDEX approval_votes_by_approval ON approval_votes (approval_id);

-- Every decision and refusal, for `hive audit`.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_us       INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    approval_id INTEGER,
    agent       TEXT,
    sha         TEXT,
    outcome     TEXT NOT NULL,
    detail      TEXT
);
