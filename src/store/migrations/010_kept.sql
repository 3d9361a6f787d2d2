-- Kept state (issue 11): requests to destroy, revive and purge an agent, and a purge's second
-- confirmation ('confirming': approved, waiting for the operator's `purge <name>` in the
-- request's thread). SQLite cannot change a CHECK, so the approvals table is rebuilt with its
-- rows; the votes are carried over a table without a reference while it is rebuilt (the
-- foreign keys stay on throughout).
CREATE TABLE approvals_new (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL CHECK (kind IN
                  ('apply_commit', 'init_config', 'destroy', 'revive', 'purge')),
    agent         TEXT NOT NULL,
    sha           TEXT NOT NULL,
    requester     TEXT NOT NULL,
    summary       TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'pending' CHECK (state IN
                  ('pending', 'approved', 'confirming', 'applying', 'applied', 'failed', 'denied',
                   'expired', 'cancelled')),
    required      INTEGER NOT NULL,
    created_us    INTEGER NOT NULL,
    expires_us    INTEGER NOT NULL,
    request_event TEXT UNIQUE,
    decided_us    INTEGER,
    reason        TEXT,
    deploy        INTEGER,
    complete      INTEGER NOT NULL DEFAULT 1,
    outcome_told  INTEGER NOT NULL DEFAULT 1
);
INSERT INTO approvals_new (id, kind, agent, sha, requester, summary, state, required, created_us,
                           expires_us, request_event, decided_us, reason, deploy, complete,
                           outcome_told)
    SELECT id, kind, agent, sha, requester, summary, state, required, created_us, expires_us,
           request_event, decided_us, reason, deploy, complete, outcome_told
    FROM approvals;
CREATE TABLE approval_votes_carried AS SELECT * FROM approval_votes;
DROP TABLE approval_votes;
DROP TABLE approvals;
ALTER TABLE approvals_new RENAME TO approvals;
CREATE INDEX approvals_state ON approvals (state, id);
CREATE TABLE approval_votes (
    reaction_event TEXT PRIMARY KEY,
    approval_id    INTEGER NOT NULL REFERENCES approvals (id),
    voter          TEXT NOT NULL,
    verdict        TEXT NOT NULL CHECK (verdict IN ('approve', 'deny')),
    withdrawn      INTEGER NOT NULL DEFAULT 0,
    ts_us          INTEGER NOT NULL
);
INSERT INTO approval_votes SELECT reaction_event, approval_id, voter, verdict, withdrawn, ts_us
    FROM approval_votes_carried;
DROP TABLE approval_votes_carried;
CREATE INDEX approval_votes_by_approval ON approval_votes (approval_id);

-- Agents destroyed and kept: not started, not routed to, their directory (config history,
-- state, log) left on disk until a purge. One row per kept agent; a revive or a purge deletes it.
CREATE TABLE kept_agents (
    name        TEXT PRIMARY KEY,
    since_us    INTEGER NOT NULL,
    -- The destroy request that kept it.
    approval_id INTEGER NOT NULL,
    -- The config it ran when it was destroyed (what a revive brings back).
    sha         TEXT NOT NULL
);
