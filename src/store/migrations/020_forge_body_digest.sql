-- A webhook delivery is also recorded once by its body (issue 17, fix A): the delivery id
-- header is not covered by the signature, so a captured signed body could come back under a
-- fresh id. `body_sha256` is the lowercase hex SHA-256 of the raw body; rows recorded before
-- this migration have none (NULLs are distinct in a UNIQUE index, so they never collide).
ALTER TABLE forge_deliveries ADD COLUMN body_sha256 TEXT;
CREATE UNIQUE INDEX forge_deliveries_body ON forge_deliveries (server, body_sha256);
