//! What start-up already did on the homeserver (`identities`): each agent's registered user and
//! the profile last set for it. A warm start reads these instead of asking again
//! (`c0re/rooms/startup.rs` decides what is left to do).

use std::collections::HashMap;

use rusqlite::params;

use super::Store;

/// An agent's identity as the homeserver last took it: registered as `user_id`, this display
/// name (as sent, redacted) and avatar set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityMark {
    pub user_id: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
}

impl Store {
    /// Every agent's identity mark, by agent name.
    pub fn identity_marks(&self) -> anyhow::Result<HashMap<String, IdentityMark>> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare("SELECT name, user_id, display_name, avatar_url FROM identities")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                IdentityMark {
                    user_id: r.get(1)?,
                    display_name: r.get(2)?,
                    avatar_url: r.get(3)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records that `name`'s identity is registered and its profile set as `mark` says.
    pub fn set_identity_mark(&self, name: &str, mark: &IdentityMark) -> anyhow::Result<()> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO identities (name, user_id, display_name, avatar_url) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET user_id = ?2, display_name = ?3, avatar_url = ?4",
            params![name, mark.user_id, mark.display_name, mark.avatar_url],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_marks_are_kept_and_replaced() {
        let s = Store::open_in_memory().expect("in-memory store");
        assert!(s.identity_marks().expect("read").is_empty());
        let mark = IdentityMark {
            user_id: "@echo:hive.test".into(),
            display_name: "Echo".into(),
            avatar_url: None,
        };
        s.set_identity_mark("echo", &mark).expect("write");
        let newer = IdentityMark {
            display_name: "Echo 2".into(),
            avatar_url: Some("mxc://hive.test/a".into()),
            ..mark.clone()
        };
        s.set_identity_mark("echo", &newer).expect("replace");
        let marks = s.identity_marks().expect("read");
        assert_eq!(marks.len(), 1);
        assert_eq!(marks["echo"], newer);
    }
}
