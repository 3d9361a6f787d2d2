-- The event a post became, once the homeserver took it: a scheduled fire's event is then found
-- in the agent's queue, and a schedule is not fired again while its last fire waits there
-- (`c0re/schedules/due.rs`). Rows sent before this migration have none.
ALTER TABLE outbox ADD COLUMN event_id TEXT;
