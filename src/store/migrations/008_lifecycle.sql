-- What the managers want of each agent's harness (`stop` / `start`), kept across restarts of
-- hive-c0re, and its last crash. No row: running, never crashed.
CREATE TABLE agent_lifecycle (
    name         TEXT PRIMARY KEY,
    wanted       TEXT NOT NULL DEFAULT 'running' CHECK (wanted IN ('running', 'stopped')),
    -- Who asked for it (an agent's name), and when.
    wanted_by    TEXT,
    wanted_us    INTEGER,
    crash_us     INTEGER,
    -- The exit status as the runtime describes it.
    crash_status TEXT
);
