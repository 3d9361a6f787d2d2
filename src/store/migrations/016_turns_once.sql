-- One `turns` row per attempt: a cancelled attempt was recorded twice (`cancelled` by the
-- cancel, then `interrupted` or `done` by the session that saw it end). The first row is the
-- true one; later ones go, and the index keeps it so (`record_turn` inserts OR IGNORE).
DELETE FROM turns WHERE id NOT IN (SELECT MIN(id) FROM turns GROUP BY agent, inbox_id, attempt);
CREATE UNIQUE INDEX turns_once ON turns (agent, inbox_id, attempt);

-- The `!cancel` (or `!hive cancel`) commands carried out, by their event: a command delivered
-- again (after a crash of the core before it was acked) is answered again and cancels nothing.
CREATE TABLE cancels (
    command_event TEXT PRIMARY KEY,
    inbox_id      INTEGER NOT NULL,
    ts_us         INTEGER NOT NULL
);
