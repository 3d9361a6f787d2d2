-- An agent's persistent notes (`read_notes` / `write_notes`), kept by the core.
CREATE TABLE notes (
    agent      TEXT PRIMARY KEY,
    text       TEXT NOT NULL,
    updated_us INTEGER NOT NULL
);

-- `remind`: a prompt an agent schedules for itself, delivered as a message when due.
CREATE TABLE reminders (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    agent     TEXT NOT NULL,
    text      TEXT NOT NULL,
    due_us    INTEGER NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX reminders_due ON reminders (delivered, due_us);
