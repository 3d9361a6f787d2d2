-- The web console's one-time login links and its sessions. Only keyed digests of the tokens
-- are kept (`c0re/web/session.rs`: HMAC under a key in `<data>/web/key`), so a copy of the
-- database holds no link and no session anyone could use.
CREATE TABLE web_links (
    digest     TEXT PRIMARY KEY,
    created_us INTEGER NOT NULL,
    expires_us INTEGER NOT NULL,
    -- When the link was followed; a link works once.
    used_us    INTEGER
);
CREATE TABLE web_sessions (
    digest     TEXT PRIMARY KEY,
    created_us INTEGER NOT NULL,
    expires_us INTEGER NOT NULL
);
