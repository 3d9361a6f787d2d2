-- What start-up already did on the homeserver, so a warm start does not do it again: an
-- agent's identity was registered as `user_id`, and this is the profile last set for it.
CREATE TABLE identities (
    name         TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    display_name TEXT NOT NULL,
    avatar_url   TEXT
);
