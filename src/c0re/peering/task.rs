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

/// How often each peer is probed.
pub const PROBE_EVERY: Duration = Duration::from_secs(30);
/// How often a peering that is set up is repaired (members, directory).
pub const REPAIR_EVERY: Duration = Duration::from_secs(600);
/// Pages of 100 events read back when filling a gap.
pub const GAP_PAGES: usize = 20;

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
            // Nothing to do, ever; but a loop that returns is restarted, and one that keeps
            // returning stops the hive (c0re/tasks.rs): wait until the hive stops instead.
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
        loop {
            for peer in &peers {
                let a = due.get_mut(&peer.hive).expect("one attempt per peer");
                if Instant::now() < a.at {
                    continue;
                }
                match self.set_up_peering(peer).await {
                    Ok(room) => {
                        if a.failures > 0 || a.last_error.is_some() || a.at.elapsed() < REPAIR_EVERY
                        {
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
                for peer in &peers {
                    let error = self.probe(peer).await.err();
                    if let Err(e) = self
                        .store()
                        .peer_probed(peer.hive.as_str(), error.as_deref())
                    {
                        tracing::warn!(error = %format!("{e:#}"), "could not record a probe");
                    }
                }
                next_probe = Instant::now() + PROBE_EVERY;
            }
            let gaps = self.store().peer_gaps().unwrap_or_default();
            for gap in &gaps {
                if let Err(e) = self.fill_gap(gap).await {
                    tracing::warn!(peer = %gap.peer, error = %format!("{e:#}"), "could not fill a gap in a peer's stream");
                }
            }
            let mut wake_at = due
                .values()
                .map(|a| a.at)
                .min()
                .unwrap_or(next_probe)
                .min(next_probe);
            if !self.store().peer_gaps().unwrap_or_default().is_empty() {
                wake_at = wake_at.min(Instant::now() + Duration::from_secs(2));
            }
            tokio::select! {
                _ = self.cancel().cancelled() => return,
                _ = self.peering().wake.notified() => {}
                _ = tokio::time::sleep_until(wake_at.into()) => {}
            }
        }
    }

    /// Asks the peer's server for its core user's profile, through our homeserver (so over the
    /// same federation path, TLS and allow-list as messages). A missing profile is an answer too.
    pub(crate) async fn probe(&self, peer: &Peer) -> Result<(), String> {
        let req = get_profile::v3::Request::new(peer.bot.clone());
        let answer =
            tokio::time::timeout(Duration::from_secs(15), self.client().send(req, None)).await;
        match answer {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.errcode() == Some("M_NOT_FOUND") => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer within 15 s".into()),
        }
    }

    /// Reads the peer room's history back until it reaches the gap's start, and accepts what
    /// it finds (the store holds or releases each by its number).
    async fn fill_gap(&self, gap: &PeerGap) -> anyhow::Result<()> {
        let hive = HiveName::parse(&gap.peer).map_err(|e| anyhow::anyhow!(e))?;
        let Some(room) = self.peering().room(&hive) else {
            return Ok(());
        };
        let mut found: Vec<TimelineEvent> = Vec::new();
        let mut from: Option<String> = None;
        'pages: for _ in 0..GAP_PAGES {
            let mut req = get_message_events::v3::Request::new(room.clone(), Direction::Backward);
            req.from = from.take();
            req.limit = UInt::from(100u32);
            let resp = self.client().send(req, None).await?;
            for raw in &resp.chunk {
                let Ok(ev) = raw.deserialize_as_unchecked::<TimelineEvent>() else {
                    continue;
                };
                let reached = ev
                    .content
                    .get(PEER_KEY)
                    .filter(|p| p.get("epoch").and_then(|e| e.as_str()) == Some(gap.epoch.as_str()))
                    .and_then(|p| p.get("seq").and_then(|s| s.as_i64()))
                    .is_some_and(|seq| seq < gap.next);
                found.push(ev);
                if reached {
                    break 'pages;
                }
            }
            if resp.end.is_none() || resp.chunk.is_empty() {
                break;
            }
            from = resp.end;
        }
        found.reverse();
        tracing::info!(peer = %gap.peer, next = gap.next, held = gap.held, read = found.len(), "filling a gap in a peer's stream");
        self.accept(&found, now_us())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_thirty_seconds() {
        let got: Vec<u64> = (0..8).map(|f| retry_after(f).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
