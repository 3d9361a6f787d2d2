-- ask_operator: an agent's question in #hive-approvals, answered by an operator's reaction
-- (an option's keycap) or a reply in its thread; the answer goes back to the agent.
CREATE TABLE questions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    agent         TEXT NOT NULL,
    question      TEXT NOT NULL,
    options       TEXT NOT NULL,  -- JSON array of strings
    state         TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'answered', 'expired')),
    created_us    INTEGER NOT NULL,
    expires_us    INTEGER NOT NULL,
    request_event TEXT UNIQUE,
    answer        TEXT,
    answered_by   TEXT,
    decided_us    INTEGER
);
CREATE INDEX questions_state ON questions (state, id);
