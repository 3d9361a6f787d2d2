//! The web console's login links and sessions (`web_links`, `web_sessions`), by the keyed
//! digest of their token: the store never sees a token itself. What a row means is decided in
//! `c0re/web/session.rs`; here each change is one conditional statement, so two browsers
//! following the same link at once cannot both log in.

use rusqlite::{OptionalExtension, params};

use super::Store;

/// A login link as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebLink {
    pub created_us: i64,
    pub expires_us: i64,
    /// When it was followed (a link works once).
    pub used_us: Option<i64>,
}

/// A session as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebSession {
    pub created_us: i64,
    pub expires_us: i64,
}

impl Store {
    /// Records a new login link (its token's digest), working until `expires_us`. Links
    /// expired at `now_us` are forgotten on the way (links minted and never followed would
    /// otherwise pile up).
    pub fn web_link_insert(
        &self,
        digest: &str,
        now_us: i64,
        expires_us: i64,
    ) -> anyhow::Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM web_links WHERE expires_us <= ?1",
            params![now_us],
        )?;
        tx.execute(
            "INSERT INTO web_links (digest, created_us, expires_us) VALUES (?1, ?2, ?3)",
            params![digest, now_us, expires_us],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The link whose token has this digest, if one was made.
    pub fn web_link(&self, digest: &str) -> anyhow::Result<Option<WebLink>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT created_us, expires_us, used_us FROM web_links WHERE digest = ?1",
        )?;
        Ok(st
            .query_row([digest], |r| {
                Ok(WebLink {
                    created_us: r.get(0)?,
                    expires_us: r.get(1)?,
                    used_us: r.get(2)?,
                })
            })
            .optional()?)
    }

    /// Uses the link `link` (if it is still unused and unexpired at `now_us`) and opens the
    /// session `session` until `session_expires_us`, in one transaction. `false`: the link was
    /// used or expired meanwhile (a race lost), and no session was opened. Expired links and
    /// sessions are forgotten on the way.
    pub fn web_login(
        &self,
        link: &str,
        session: &str,
        now_us: i64,
        session_expires_us: i64,
    ) -> anyhow::Result<bool> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let used = tx.execute(
            "UPDATE web_links SET used_us = ?2
             WHERE digest = ?1 AND used_us IS NULL AND expires_us > ?2",
            params![link, now_us],
        )?;
        if used != 1 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO web_sessions (digest, created_us, expires_us) VALUES (?1, ?2, ?3)",
            params![session, now_us, session_expires_us],
        )?;
        // A used link is kept until it would have expired, so a second use is told "used".
        tx.execute(
            "DELETE FROM web_links WHERE expires_us <= ?1",
            params![now_us],
        )?;
        tx.execute(
            "DELETE FROM web_sessions WHERE expires_us <= ?1",
            params![now_us],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// The session whose token has this digest, if it was opened and not closed.
    pub fn web_session(&self, digest: &str) -> anyhow::Result<Option<WebSession>> {
        let conn = self.lock();
        let mut st = conn
            .prepare_cached("SELECT created_us, expires_us FROM web_sessions WHERE digest = ?1")?;
        Ok(st
            .query_row([digest], |r| {
                Ok(WebSession {
                    created_us: r.get(0)?,
                    expires_us: r.get(1)?,
                })
            })
            .optional()?)
    }

    /// Closes a session (logout). `false`: there was none.
    pub fn web_session_close(&self, digest: &str) -> anyhow::Result<bool> {
        Ok(self
            .lock()
            .execute("DELETE FROM web_sessions WHERE digest = ?1", [digest])?
            == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_logs_in_once_and_not_after_it_expires() {
        let s = Store::open_in_memory().unwrap();
        s.web_link_insert("l1", 100, 200).unwrap();
        s.web_link_insert("l2", 100, 200).unwrap();
        assert_eq!(s.web_link("l1").unwrap().unwrap().used_us, None);
        assert!(s.web_login("l1", "s1", 150, 10_000).unwrap());
        assert_eq!(s.web_link("l1").unwrap().unwrap().used_us, Some(150));
        assert!(!s.web_login("l1", "s2", 160, 10_000).unwrap(), "used");
        assert_eq!(
            s.web_session("s2").unwrap(),
            None,
            "no session for a used link"
        );
        assert!(!s.web_login("l2", "s3", 200, 10_000).unwrap(), "expired");
        assert!(!s.web_login("nope", "s4", 150, 10_000).unwrap(), "unknown");
        assert_eq!(
            s.web_session("s1").unwrap(),
            Some(WebSession {
                created_us: 150,
                expires_us: 10_000
            })
        );
        assert!(s.web_session_close("s1").unwrap());
        assert!(!s.web_session_close("s1").unwrap());
        assert_eq!(s.web_session("s1").unwrap(), None);
    }

    #[test]
    fn expired_rows_are_forgotten_at_a_login() {
        let s = Store::open_in_memory().unwrap();
        s.web_link_insert("old", 0, 10).unwrap();
        s.web_link_insert("new", 0, 1_000).unwrap();
        s.web_link_insert("new2", 0, 1_000).unwrap();
        assert!(s.web_login("new", "s-old", 5, 20).unwrap());
        assert!(s.web_login("new2", "s-new", 500, 2_000).unwrap());
        assert_eq!(s.web_link("old").unwrap(), None);
        assert_eq!(s.web_session("s-old").unwrap(), None);
        assert!(s.web_session("s-new").unwrap().is_some());
        assert!(s.web_link("new").unwrap().is_some(), "a used link is kept");
    }

    #[test]
    fn expired_links_are_forgotten_when_a_link_is_made() {
        let s = Store::open_in_memory().unwrap();
        s.web_link_insert("old", 0, 10).unwrap();
        s.web_link_insert("live", 0, 1_000).unwrap();
        s.web_link_insert("fresh", 50, 2_000).unwrap();
        assert_eq!(s.web_link("old").unwrap(), None, "expired: forgotten");
        assert!(s.web_link("live").unwrap().is_some(), "unexpired: kept");
        assert!(s.web_link("fresh").unwrap().is_some());
    }
}
