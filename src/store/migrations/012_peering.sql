-- Cross-hive messages (docs/federation.md). Each hive numbers the messages it posts to a peer,
-- per epoch (a fresh data dir is a new epoch): the receiving core releases each peer's messages
-- to its agents once, in that order, whatever order federation brings them in.

-- This data dir's epoch: one row, made at the first cross-hive message.
CREATE TABLE peer_epoch (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    epoch TEXT NOT NULL
);

-- What this hive posts to each peer: the number each message got, reserved with its content
-- before it is posted (a re-send with that txn id reuses both, as the homeserver reuses the
-- event); `event_id` is set once the homeserver took it. A reservation without one is posted
-- again by the peering task, so a number once given out is never left as a hole.
CREATE TABLE peer_sent (
    peer        TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    txn_id      TEXT NOT NULL,
    sender      TEXT NOT NULL,
    room_id     TEXT NOT NULL,
    content     TEXT NOT NULL,
    reserved_us INTEGER NOT NULL,
    event_id    TEXT,
    sent_us     INTEGER,
    PRIMARY KEY (peer, seq),
    UNIQUE (peer, txn_id)
);
CREATE INDEX peer_sent_unsent ON peer_sent (peer) WHERE event_id IS NULL;
CREATE INDEX peer_sent_event ON peer_sent (event_id) WHERE event_id IS NOT NULL;

-- Each peer's stream to this hive: the next number to release.
CREATE TABLE peer_cursor (
    peer     TEXT NOT NULL,
    epoch    TEXT NOT NULL,
    next_seq INTEGER NOT NULL,
    PRIMARY KEY (peer, epoch)
);

-- A peer's messages that arrived before an earlier one: released, in order, when the gap fills.
-- `agents` is a JSON list (empty for a refused message); `refusal` the content of the notice
-- that tells the sender why, posted through the outbox when the message is released.
CREATE TABLE peer_held (
    peer        TEXT NOT NULL,
    epoch       TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    event_id    TEXT NOT NULL,
    room_id     TEXT NOT NULL,
    sender      TEXT NOT NULL,
    body        TEXT NOT NULL,
    origin_ts   INTEGER NOT NULL,
    agents      TEXT NOT NULL,
    refusal     TEXT,
    received_us INTEGER NOT NULL,
    PRIMARY KEY (peer, epoch, seq)
);

-- What `hive status` shows of each peer: the peer room, the last event from the peer's server,
-- the last probe of its reachability.
CREATE TABLE peer_status (
    peer          TEXT PRIMARY KEY,
    room_id       TEXT,
    last_event_us INTEGER,
    probed_us     INTEGER,
    reachable     INTEGER,
    error         TEXT
);
