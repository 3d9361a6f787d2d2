//! The schema, as migrations applied in order: a database's `user_version` is how many of
//! them it has, so the list is positional — append only, never reorder or edit one that landed.

/// Every migration, oldest first: (name, SQL).
pub(super) const MIGRATIONS: &[(&str, &str)] = &[
    ("001_init", include_str!("migrations/001_init.sql")),
    (
        "002_approvals",
        include_str!("migrations/002_approvals.sql"),
    ),
    (
        "003_questions",
        include_str!("migrations/003_questions.sql"),
    ),
    ("004_tools", include_str!("migrations/004_tools.sql")),
    (
        "005_model_calls",
        include_str!("migrations/005_model_calls.sql"),
    ),
    (
        "006_model_costs",
        include_str!("migrations/006_model_costs.sql"),
    ),
    ("007_outbox", include_str!("migrations/007_outbox.sql")),
    (
        "008_lifecycle",
        include_str!("migrations/008_lifecycle.sql"),
    ),
    ("009_recv", include_str!("migrations/009_recv.sql")),
    ("010_kept", include_str!("migrations/010_kept.sql")),
    ("011_purge_of", include_str!("migrations/011_purge_of.sql")),
    ("012_peering", include_str!("migrations/012_peering.sql")),
    ("013_turns", include_str!("migrations/013_turns.sql")),
    (
        "014_schedules",
        include_str!("migrations/014_schedules.sql"),
    ),
    (
        "015_outbox_event",
        include_str!("migrations/015_outbox_event.sql"),
    ),
    (
        "016_turns_once",
        include_str!("migrations/016_turns_once.sql"),
    ),
    ("017_startup", include_str!("migrations/017_startup.sql")),
    (
        "018_web_sessions",
        include_str!("migrations/018_web_sessions.sql"),
    ),
    ("019_forge", include_str!("migrations/019_forge.sql")),
    (
        "020_forge_body_digest",
        include_str!("migrations/020_forge_body_digest.sql"),
    ),
];
