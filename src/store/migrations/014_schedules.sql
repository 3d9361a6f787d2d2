-- Recurring schedules (agent.toml `[[schedules]]`): per agent and schedule, when the core first
-- saw it (a new schedule does not fire for the past: its grid starts there) and its last
-- scheduled fire (after downtime one missed fire is replayed, then the grid goes on from it).
-- A fire is recorded in the same sqlite transaction as the outbox post that delivers it.
CREATE TABLE schedules (
    agent          TEXT NOT NULL,
    schedule       TEXT NOT NULL,
    since_us       INTEGER NOT NULL,
    last_fire_us   INTEGER,
    -- The last `!hive fire` (it does not move the grid).
    last_manual_us INTEGER,
    PRIMARY KEY (agent, schedule)
);
