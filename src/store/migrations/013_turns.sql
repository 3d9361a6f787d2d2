-- One row per attempt's end of a turn (one inbound message handed to a harness): how it ended,
-- when it started and ended, and the model the agent's spec named then (its brain kind for
-- brains without one). Tokens and cost are not here: they are the model calls of the same
-- (agent, inbox_id) in `model_calls`. Pruned after `retention_days`.
CREATE TABLE turns (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    agent      TEXT NOT NULL,
    inbox_id   INTEGER NOT NULL,
    attempt    INTEGER NOT NULL,
    started_us INTEGER NOT NULL,
    ended_us   INTEGER NOT NULL,
    outcome    TEXT NOT NULL,
    model      TEXT NOT NULL
);
CREATE INDEX turns_agent ON turns (agent, ended_us);
CREATE INDEX turns_ended ON turns (ended_us);
