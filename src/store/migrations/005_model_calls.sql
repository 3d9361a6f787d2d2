-- Every model call made for an agent through hive-c0re: usage per turn and per day, budgets.
CREATE TABLE model_calls (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_us             INTEGER NOT NULL,
    agent             TEXT NOT NULL,
    inbox_id          INTEGER NOT NULL,
    model             TEXT NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    ok                INTEGER NOT NULL
);
CREATE INDEX model_calls_agent ON model_calls (agent, ts_us);
CREATE INDEX model_calls_turn ON model_calls (agent, inbox_id);
