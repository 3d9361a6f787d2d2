//! What the store keeps of an agent's life beyond its harness state: whether a manager wants it
//! running or stopped (kept across restarts of the core, so a stopped agent stays stopped), its
//! last crash, and the message its turn is handling now (for `list_agents`).

use rusqlite::{OptionalExtension, params};

use super::{Store, now_us};

/// Whether an agent's harness should run: `stop` makes it [`Wanted::Stopped`] until `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wanted {
    Running,
    Stopped,
}

impl Wanted {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Wanted::Running => "running",
            Wanted::Stopped => "stopped",
        }
    }
}

/// A stored wanted state that names none of [`Wanted`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown wanted state {0:?}")]
pub struct UnknownWanted(pub String);

impl std::str::FromStr for Wanted {
    type Err = UnknownWanted;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Wanted::Running, Wanted::Stopped]
            .into_iter()
            .find(|w| w.as_str() == s)
            .ok_or_else(|| UnknownWanted(s.to_owned()))
    }
}

/// An agent's last crash: when (µs since the epoch) and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crash {
    pub at_us: i64,
    pub status: String,
}

/// The message an agent's turn is handling now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InflightTurn {
    pub inbox_id: i64,
    pub event_id: String,
    pub sender: String,
    /// When it was handed to the harness (µs since the epoch).
    pub since_us: i64,
    pub attempt: u32,
}

impl Store {
    /// What is wanted of `name`'s harness (running unless a manager stopped it).
    pub fn wanted(&self, name: &str) -> anyhow::Result<Wanted> {
        let conn = self.lock();
        let stored: Option<String> = conn
            .query_row(
                "SELECT wanted FROM agent_lifecycle WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        match stored {
            None => Ok(Wanted::Running),
            Some(s) => Ok(s.parse()?),
        }
    }

    /// Records what `by` wants of `name`'s harness.
    pub fn set_wanted(&self, name: &str, wanted: Wanted, by: &str) -> anyhow::Result<()> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO agent_lifecycle (name, wanted, wanted_by, wanted_us) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET wanted = ?2, wanted_by = ?3, wanted_us = ?4",
            params![name, wanted.as_str(), by, now_us()],
        )?;
        Ok(())
    }

    /// Records a crash of `name`'s harness (the last one is kept).
    pub fn record_crash(&self, name: &str, status: &str) -> anyhow::Result<()> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO agent_lifecycle (name, crash_us, crash_status) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET crash_us = ?2, crash_status = ?3",
            params![name, now_us(), status],
        )?;
        Ok(())
    }

    /// `name`'s last crash, if it ever crashed.
    pub fn last_crash(&self, name: &str) -> anyhow::Result<Option<Crash>> {
        let conn = self.lock();
        let row: Option<(Option<i64>, Option<String>)> = conn
            .query_row(
                "SELECT crash_us, crash_status FROM agent_lifecycle WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(match row {
            Some((Some(at_us), Some(status))) => Some(Crash { at_us, status }),
            _ => None,
        })
    }

    /// The message `agent`'s turn is handling now, if any: its `inflight` row that no turn
    /// pulled (`turn_id` NULL; what a turn pulls with `recv` is in flight too, but is no turn).
    pub fn inflight_turn(&self, agent: &str) -> anyhow::Result<Option<InflightTurn>> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT id, event_id, sender, COALESCE(delivered_us, enqueued_us), attempts
                 FROM inbox WHERE agent = ?1 AND state = 'inflight' AND turn_id IS NULL
                 ORDER BY id LIMIT 1",
                [agent],
                |r| {
                    Ok(InflightTurn {
                        inbox_id: r.get(0)?,
                        event_id: r.get(1)?,
                        sender: r.get(2)?,
                        since_us: r.get(3)?,
                        attempt: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_round_trips_through_its_stored_form() {
        for w in [Wanted::Running, Wanted::Stopped] {
            assert_eq!(w.as_str().parse(), Ok(w));
        }
        assert_eq!(
            "Stopped".parse::<Wanted>(),
            Err(UnknownWanted("Stopped".into()))
        );
    }

    #[test]
    fn wanted_and_crashes_are_kept_per_agent() {
        let s = Store::open_in_memory().unwrap();
        assert_eq!(
            s.wanted("echo").unwrap(),
            Wanted::Running,
            "no row: running"
        );
        assert_eq!(s.last_crash("echo").unwrap(), None);
        s.set_wanted("echo", Wanted::Stopped, "hm1nd").unwrap();
        assert_eq!(s.wanted("echo").unwrap(), Wanted::Stopped);
        assert_eq!(s.wanted("argus").unwrap(), Wanted::Running);
        s.record_crash("echo", "exit status 3").unwrap();
        assert_eq!(
            s.wanted("echo").unwrap(),
            Wanted::Stopped,
            "a crash keeps the wanted state"
        );
        s.record_crash("echo", "signal 9").unwrap();
        let c = s.last_crash("echo").unwrap().unwrap();
        assert_eq!(c.status, "signal 9", "the last crash");
        s.record_crash("argus", "exit status 1").unwrap();
        assert_eq!(s.wanted("argus").unwrap(), Wanted::Running, "a crash alone");
        s.set_wanted("echo", Wanted::Running, "hm1nd").unwrap();
        assert_eq!(s.wanted("echo").unwrap(), Wanted::Running);
        assert_eq!(s.last_crash("echo").unwrap().unwrap().status, "signal 9");
    }

    #[test]
    fn the_turn_in_flight_is_the_inflight_row() {
        let s = Store::open_in_memory().unwrap();
        let ev = crate::store::Enqueue {
            event_id: "$1".into(),
            room_id: "!r:x".into(),
            sender: "@op:x".into(),
            body: "hi".into(),
            origin_ts: 1,
            agents: vec!["echo".into()],
            hive_event: None,
            peer: None,
        };
        s.ingest(&[("$1".into(), "!r:x".into())], &[ev], now_us())
            .unwrap();
        assert_eq!(s.inflight_turn("echo").unwrap(), None, "pending only");
        let (item, _) = s.take_next("echo", 3).unwrap();
        let item = item.unwrap();
        let turn = s.inflight_turn("echo").unwrap().unwrap();
        assert_eq!(
            (
                turn.inbox_id,
                turn.event_id.as_str(),
                turn.sender.as_str(),
                turn.attempt
            ),
            (item.id, "$1", "@op:x", 1)
        );
        assert!(s.ack(item.id).unwrap());
        assert_eq!(s.inflight_turn("echo").unwrap(), None, "done");
    }

    #[test]
    fn a_pulled_message_is_no_turn() {
        let s = Store::open_in_memory().unwrap();
        let ev = |id: &str| crate::store::Enqueue {
            event_id: id.into(),
            room_id: "!r:x".into(),
            sender: "@op:x".into(),
            body: "hi".into(),
            origin_ts: 1,
            agents: vec!["echo".into()],
            hive_event: None,
            peer: None,
        };
        let seen = [("$1".into(), "!r:x".into()), ("$2".into(), "!r:x".into())];
        s.ingest(&seen, &[ev("$1"), ev("$2")], now_us()).unwrap();
        // $1 is pending while $2 runs as the turn (as after $1's turn was released and $2 taken
        // by hand) and pulls $1: the lower id in flight is the pulled one, not the turn.
        let (first, _) = s.take_next("echo", 3).unwrap();
        let first = first.unwrap();
        s.release(first.id).unwrap();
        let conn = s.lock();
        conn.execute(
            "UPDATE inbox SET state = 'inflight', attempts = 1 WHERE event_id = '$2'",
            [],
        )
        .unwrap();
        let turn: i64 = conn
            .query_row("SELECT id FROM inbox WHERE event_id = '$2'", [], |r| {
                r.get(0)
            })
            .unwrap();
        drop(conn);
        let limits = crate::store::PullLimits {
            max: 8,
            max_bytes: 1 << 20,
            max_attempts: 3,
        };
        let crate::store::Pull::Pulled { taken, .. } =
            s.pull_into_turn("echo", turn, 1, &limits).unwrap()
        else {
            panic!("the turn is in flight");
        };
        assert_eq!(taken[0].id, first.id, "$1 pulled into $2's turn");
        let now = s.inflight_turn("echo").unwrap().unwrap();
        assert_eq!((now.inbox_id, now.event_id.as_str()), (turn, "$2"));
    }
}
