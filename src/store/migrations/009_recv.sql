-- recv: a message a running turn pulled from its agent's queue is in flight as part of that
-- turn. `turn_id` is the inbox id of the turn's own message (NULL for a turn's own message and
-- for anything not pulled). The turn's ack marks its pulled messages done in the same
-- transaction; a turn that ends without an ack (harness gone, core restarted, fail) puts them
-- back to pending with turn_id cleared. (No foreign key: a cleanup deleting old rows must not
-- trip over a done message that names its turn.)
ALTER TABLE inbox ADD COLUMN turn_id INTEGER;
CREATE INDEX inbox_turn ON inbox (turn_id) WHERE turn_id IS NOT NULL;
