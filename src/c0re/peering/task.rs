//! The peering task: sets each peering up (again and again while the peer is away), probes
//! each peer's reachability for `hive status`, and fills gaps in a peer's stream by paging the
//! peer room's history back (the homeserver backfills over federation what it never pushed).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ruma::UInt;
use ruma::api::Direction;
use ruma::api::client::message::get_message_events;
use ruma::api::client::profile::get_profile;

use super::PEER_KEY;
use crate::agent_spec::HiveName;
use crate::c0re::Core;
use crate::c0re::routing::TimelineEvent;
use crate::config::Peer;
use crate::store::{PeerGap, now_us};

/// A peer's directory and recent history are read again at most this often.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// How long a probe waits for the peer's answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often each peer is probed.
pub const PROBE_EVERY: Duration = Duration::from_secs(30);
/// How often a peering that is set up is repaired (members, directory).
pub const REPAIR_EVERY: Duration = Duration::from_secs(600);
/// Pages of 100 events read back when filling a gap.
pub const GAP_PAGES: usize = 50;
/// How long one gap fill may take (history read from a peer that is away can block).
pub const FILL_TIMEOUT: Duration = Duration::from_secs(30);
/// Pages of 100 events read back once a peering is set up in this run.
pub const CATCH_UP_PAGES: usize = 3;

/// How long messages wait behind a gap in a peer's stream before the missing ones are given up
/// (a message the peer's homeserver lost, or one this homeserver can never see): later ones
/// must not wait forever.
pub const GAP_GIVE_UP: Duration = Duration::from_secs(600);

/// Whether to give up on `gap` at `now_us`: the oldest message behind it has waited
/// [`GAP_GIVE_UP`].
pub fn give_up(gap: &PeerGap, now_us: i64) -> bool {
    now_us - gap.since_us >= GAP_GIVE_UP.as_micros() as i64
}

/// What a gap fill does with an event it reads back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// A numbered message of the gap's stream from the peer's server: accepted again.
    Take,
    /// Anything else (our own, state, another stream): left alone.
    Skip,
    /// A number before the gap: history before it is not needed.
    Reached,
}

/// Judges an event read back while filling `gap` in the stream of the peer on `server`;
/// `published` says whether a user is an agent the peer publishes (only their numbers mark
/// where the gap starts: anyone else on the peer's server could write any number).
pub fn in_gap(
    ev: &TimelineEvent,
    server: &ruma::ServerName,
    gap: &PeerGap,
    published: impl Fn(&ruma::UserId) -> bool,
) -> Fill {
    let seq = ev
        .content
        .get(PEER_KEY)
        .filter(|p| p.get("epoch").and_then(|e| e.as_str()) == Some(gap.epoch.as_str()))
        .and_then(|p| p.get("seq").and_then(|s| s.as_i64()));
    match seq {
        Some(_) if ev.sender.server_name() != server || ev.state_key.is_some() => Fill::Skip,
        Some(seq) if seq < gap.next && published(&ev.sender) => Fill::Reached,
        Some(seq) if seq < gap.next => Fill::Skip,
        Some(_) => Fill::Take,
        None => Fill::Skip,
    }
}

/// When to read a gap's history again after `tries` reads: 2 s doubling, at most 60 s.
pub fn fill_after(tries: u32) -> Duration {
    Duration::from_secs((2u64 << tries.min(5)).min(60))
}

/// When to try setting a peering up again after `failures` failed tries: 1 s doubling, at most
/// 30 s.
pub fn retry_after(failures: u32) -> Duration {
    Duration::from_secs((1u64 << failures.min(5)).min(30))
}

struct Attempt {
    at: Instant,
    failures: u32,
    last_error: Option<String>,
}

impl Core {
    pub async fn peering_loop(self) {
        let peers: Vec<Peer> = self.cfg().peers.clone();
        if peers.is_empty() {
            // Nothing to do, and a supervised task that ends is a failure: wait for the stop.
            self.cancel().cancelled().await;
            return;
        }
        let mut due: HashMap<HiveName, Attempt> = peers
            .iter()
            .map(|p| {
                (
                    p.hive.clone(),
                    Attempt {
                        at: Instant::now(),
                        failures: 0,
                        last_error: None,
                    },
                )
            })
            .collect();
        let mut next_probe = Instant::now();
        let mut caught_up: std::collections::HashSet<HiveName> = Default::default();
        // Each open gap's next fill and how many came before (a gap that does not fill is
        // read for less and less often).
        let mut fills: HashMap<(String, String), (Instant, u32)> = HashMap::new();
        // Peers whose directory is to be read again, and when each was last.
        let mut stale: std::collections::HashSet<HiveName> = Default::default();
        let mut refreshed: HashMap<HiveName, Instant> = HashMap::new();
        loop {
            for peer in &peers {
                let a = due.get_mut(&peer.hive).expect("one attempt per peer");
                if Instant::now() < a.at {
                    continue;
                }
                match self.set_up_peering(peer).await {
                    Ok(room) => {
                        let first = !caught_up.contains(&peer.hive);
                        if first {
                            // What came before the room was known here (the first set-up, a
                            // repair after a failed start) is read back once.
                            match self.catch_up(&peer.hive).await {
                                Ok(()) => {
                                    caught_up.insert(peer.hive.clone());
                                }
                                Err(e) => {
                                    tracing::warn!(peer = %peer.hive, error = %format!("{e:#}"), "could not read the peer room back")
                                }
                            }
                        }
                        if first || a.failures > 0 {
                            tracing::info!(peer = %peer.hive, %room, "peering set up");
                        }
                        a.failures = 0;
                        a.last_error = None;
                        a.at = Instant::now() + REPAIR_EVERY;
                    }
                    Err(e) => {
                        let msg = format!("{e:#}");
                        if a.last_error.as_deref() != Some(&msg) {
                            tracing::warn!(peer = %peer.hive, error = %msg, "peering not set up yet; retrying");
                        }
                        a.last_error = Some(msg);
                        a.at = Instant::now() + retry_after(a.failures);
                        a.failures += 1;
                    }
                }
            }
            if Instant::now() >= next_probe {
                self.probe_peers().await;
                next_probe = Instant::now() + PROBE_EVERY;
            }
            // At most one read-back per peer per REFRESH_EVERY: a stranger's message still in
            // the history it reads would otherwise ask for the next one at once.
            stale.extend(self.peering().take_stale());
            let now = Instant::now();
            let ready: Vec<HiveName> = stale
                .iter()
                .filter(|h| refreshed.get(*h).is_none_or(|t| now >= *t + REFRESH_EVERY))
                .cloned()
                .collect();
            for hive in ready {
                stale.remove(&hive);
                refreshed.insert(hive.clone(), now);
                if let Some(peer) = peers.iter().find(|p| p.hive == hive)
                    && let Err(e) = self.refresh_directory(peer).await
                {
                    tracing::warn!(peer = %hive, error = %format!("{e:#}"), "could not read a peer's directory again");
                }
            }
            let owed = self.post_unposted().await;
            let gaps = self.store().peer_gaps().unwrap_or_default();
            fills.retain(|k, _| gaps.iter().any(|g| (&g.peer, &g.epoch) == (&k.0, &k.1)));
            for gap in &gaps {
                let key = (gap.peer.clone(), gap.epoch.clone());
                let (at, tries) = fills.get(&key).copied().unwrap_or((Instant::now(), 0));
                if Instant::now() < at {
                    continue;
                }
                fills.insert(key, (Instant::now() + fill_after(tries), tries + 1));
                if give_up(gap, now_us()) {
                    self.skip_gap(gap).await;
                } else {
                    match tokio::time::timeout(FILL_TIMEOUT, self.fill_gap(gap)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(peer = %gap.peer, error = %format!("{e:#}"), "could not fill a gap in a peer's stream")
                        }
                        Err(_) => {
                            tracing::warn!(peer = %gap.peer, "filling a gap in a peer's stream took too long; trying again")
                        }
                    }
                }
            }
            let mut wake_at = due
                .values()
                .map(|a| a.at)
                .min()
                .unwrap_or(next_probe)
                .min(next_probe);
            if owed > 0 {
                wake_at = wake_at.min(Instant::now() + Duration::from_secs(2));
            }
            if let Some(next_fill) = fills.values().map(|(at, _)| *at).min() {
                wake_at = wake_at.min(next_fill);
            }
            if let Some(next) = stale
                .iter()
                .filter_map(|h| refreshed.get(h).map(|t| *t + REFRESH_EVERY))
                .min()
            {
                wake_at = wake_at.min(next);
            }
            tokio::select! {
                _ = self.cancel().cancelled() => return,
                _ = self.peering().wake.notified() => {}
                _ = tokio::time::sleep_until(wake_at.into()) => {}
            }
        }
    }

    /// Probes every peer and records what each answered (`!hive status` asks first, so that
    /// it says how things are now).
    pub async fn probe_peers(&self) {
        // All at once: one peer that is away costs its timeout, not one per peer.
        let mut probes = tokio::task::JoinSet::new();
        for peer in self.cfg().peers.clone() {
            let core = self.clone();
            probes.spawn(async move {
                let error = core.probe(&peer).await.err();
                if let Err(e) = core
                    .store()
                    .peer_probed(peer.hive.as_str(), error.as_deref())
                {
                    tracing::warn!(error = %format!("{e:#}"), "could not record a probe");
                }
            });
        }
        while probes.join_next().await.is_some() {}
        // Reachable or not: the status message shows it.
        self.console().changed();
    }

    /// Asks the peer's server for its core user's profile, through our homeserver (so over the
    /// same federation path, TLS and allow-list as messages). A missing profile is an answer too.
    pub(crate) async fn probe(&self, peer: &Peer) -> Result<(), String> {
        let req = get_profile::v3::Request::new(peer.bot.clone());
        let answer = tokio::time::timeout(PROBE_TIMEOUT, self.client().send(req, None)).await;
        match answer {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.errcode() == Some("M_NOT_FOUND") => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
        }
    }

    /// Skips `gap`'s missing numbers, delivers what waited behind it, and tells the operators
    /// which messages never arrived.
    async fn skip_gap(&self, gap: &PeerGap) {
        match self.store().skip_gap(gap) {
            Ok((woken, refused)) => {
                tracing::error!(peer = %gap.peer, from = gap.next, to = gap.first_held - 1, "gave up on messages of a peer's stream");
                self.wake_queues(woken);
                if refused {
                    self.wake_outbox();
                }
                let missing = if gap.first_held - gap.next == 1 {
                    format!("message #{}", gap.next)
                } else {
                    format!("messages #{}–#{}", gap.next, gap.first_held - 1)
                };
                self.notice(
                    None,
                    &format!(
                        "⚠️ {} never reached this hive: {missing} of its stream did not arrive within {} minutes. The {} after them are delivered now.",
                        gap.peer,
                        GAP_GIVE_UP.as_secs() / 60,
                        gap.held
                    ),
                )
                .await;
            }
            Err(e) => {
                tracing::error!(peer = %gap.peer, error = %format!("{e:#}"), "could not give up on a gap");
            }
        }
    }

    /// Reads `peer`'s directory again from the room's state, then the room's recent history,
    /// so that a message of an agent it was not known to publish yet is taken after all.
    async fn refresh_directory(&self, peer: &Peer) -> anyhow::Result<()> {
        let Some(room) = self.peering().room(&peer.hive) else {
            return Ok(());
        };
        self.read_directory(peer, &room).await?;
        self.catch_up(&peer.hive).await
    }

    /// Reads the newest [`CATCH_UP_PAGES`] pages of the peer room back through `accept`.
    async fn catch_up(&self, hive: &HiveName) -> anyhow::Result<()> {
        let Some(room) = self.peering().room(hive) else {
            return Ok(());
        };
        let found = self
            .read_back(&room, CATCH_UP_PAGES, |_| Fill::Take)
            .await?;
        self.accept(&found, now_us())
    }

    /// Reads the peer room's history back until it reaches the gap's start, and accepts what
    /// it finds (the store holds or releases each by its number).
    async fn fill_gap(&self, gap: &PeerGap) -> anyhow::Result<()> {
        let hive = HiveName::parse(&gap.peer).map_err(|e| anyhow::anyhow!(e))?;
        let (Some(room), Some(peer)) = (
            self.peering().room(&hive),
            self.cfg().peers.iter().find(|p| p.hive == hive),
        ) else {
            return Ok(());
        };
        // A message of the gap may be an agent's the directory did not know when it came.
        self.read_directory(peer, &room).await?;
        let directory = self.peering().directory(&hive);
        let published = |u: &ruma::UserId| directory.iter().any(|a| a.user_id == u);
        let found = self
            .read_back(&room, GAP_PAGES, |ev| {
                in_gap(ev, &peer.server_name, gap, published)
            })
            .await?;
        tracing::info!(peer = %gap.peer, next = gap.next, held = gap.held, read = found.len(), "filling a gap in a peer's stream");
        self.accept(&found, now_us())
    }

    /// `room`'s history, newest first, at most `pages` pages of 100, through `judge`; what it
    /// takes comes back oldest first.
    async fn read_back(
        &self,
        room: &ruma::OwnedRoomId,
        pages: usize,
        judge: impl Fn(&TimelineEvent) -> Fill,
    ) -> anyhow::Result<Vec<TimelineEvent>> {
        let mut found: Vec<TimelineEvent> = Vec::new();
        let mut from: Option<String> = None;
        'pages: for _ in 0..pages {
            let mut req = get_message_events::v3::Request::new(room.clone(), Direction::Backward);
            req.from = from.take();
            req.limit = UInt::from(100u32);
            let resp = self.client().send(req, None).await?;
            for raw in &resp.chunk {
                let Ok(ev) = raw.deserialize_as_unchecked::<TimelineEvent>() else {
                    continue;
                };
                match judge(&ev) {
                    Fill::Take => found.push(ev),
                    Fill::Skip => {}
                    Fill::Reached => break 'pages,
                }
            }
            if resp.end.is_none() || resp.chunk.is_empty() {
                break;
            }
            from = resp.end;
        }
        found.reverse();
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_fill_takes_only_the_peers_numbered_messages_of_that_stream() {
        use serde_json::json;
        let gap = PeerGap {
            peer: "hive-b".into(),
            epoch: "e1".into(),
            next: 4,
            held: 1,
            first_held: 6,
            since_us: 0,
        };
        let server = ruma::ServerName::parse("b.test").unwrap();
        let ev = |sender: &str, peer: serde_json::Value| -> TimelineEvent {
            serde_json::from_value(json!({
                "type": "m.room.message", "event_id": "$e", "room_id": "!r:a.test",
                "sender": sender, "content": { "body": "x", PEER_KEY: peer },
            }))
            .unwrap()
        };
        struct Case {
            name: &'static str,
            event: TimelineEvent,
            want: Fill,
        }
        let cases = [
            Case {
                name: "a missing number",
                event: ev("@argus:b.test", json!({ "epoch": "e1", "seq": 5 })),
                want: Fill::Take,
            },
            Case {
                name: "one held already (harmless again)",
                event: ev("@argus:b.test", json!({ "epoch": "e1", "seq": 6 })),
                want: Fill::Take,
            },
            Case {
                name: "before the gap: stop",
                event: ev("@argus:b.test", json!({ "epoch": "e1", "seq": 3 })),
                want: Fill::Reached,
            },
            Case {
                name: "another epoch",
                event: ev("@argus:b.test", json!({ "epoch": "e0", "seq": 2 })),
                want: Fill::Skip,
            },
            Case {
                name: "before the gap, but from someone the peer does not publish: read on",
                event: ev("@mallory:b.test", json!({ "epoch": "e1", "seq": 1 })),
                want: Fill::Skip,
            },
            Case {
                name: "our own stream to the peer",
                event: ev("@iris:a.test", json!({ "epoch": "e1", "seq": 1 })),
                want: Fill::Skip,
            },
            Case {
                name: "not numbered",
                event: ev("@argus:b.test", json!(null)),
                want: Fill::Skip,
            },
        ];
        for c in cases {
            let published = |u: &ruma::UserId| u.localpart() == "argus";
            assert_eq!(
                in_gap(&c.event, &server, &gap, published),
                c.want,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn a_gap_is_given_up_after_ten_minutes() {
        let gap = |since_us| PeerGap {
            peer: "hive-b".into(),
            epoch: "e".into(),
            next: 2,
            held: 1,
            first_held: 4,
            since_us,
        };
        let ten_min = GAP_GIVE_UP.as_micros() as i64;
        let now = 10 * ten_min;
        assert!(!give_up(&gap(now), now), "just opened");
        assert!(!give_up(&gap(now - ten_min + 1), now), "not quite");
        assert!(give_up(&gap(now - ten_min), now), "ten minutes");
    }

    #[test]
    fn gap_fills_back_off_to_a_minute() {
        let got: Vec<u64> = (0..7).map(|t| fill_after(t).as_secs()).collect();
        assert_eq!(got, [2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn retries_back_off_to_thirty_seconds() {
        let got: Vec<u64> = (0..8).map(|f| retry_after(f).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
