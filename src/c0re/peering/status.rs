//! What `hive status` and `!hive status` say of each peer: reachable or not (the peering task's
//! last probe), the last event from its server, messages held behind a gap.

use crate::config::Peer;
use crate::store::PeerStatus;

/// Probes older than this say nothing about now.
pub const STALE_PROBE_US: i64 = 3 * 30 * 1_000_000;

/// How long ago `us` was, from `now_us`, in words (`12 s ago`, `3 min ago`, `2 h ago`).
pub fn ago(us: i64, now_us: i64) -> String {
    let s = (now_us - us).max(0) / 1_000_000;
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..172_800 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// Whether the peer is reachable, in words.
pub fn reachability(st: &PeerStatus, now_us: i64, core_running: bool) -> String {
    match (st.reachable, st.probed_us) {
        _ if !core_running => "unknown (hive-c0re is not running)".into(),
        (Some(true), Some(at)) if now_us - at <= STALE_PROBE_US => {
            format!("reachable (checked {})", ago(at, now_us))
        }
        (Some(false), Some(at)) if now_us - at <= STALE_PROBE_US => format!(
            "unreachable (checked {}: {})",
            ago(at, now_us),
            st.error.as_deref().unwrap_or("no answer")
        ),
        (_, Some(at)) => format!("unknown (last checked {})", ago(at, now_us)),
        _ => "not checked yet".into(),
    }
}

/// One line per peer: hive, server, reachability, last event, held messages, room.
pub fn lines(peers: &[(Peer, PeerStatus)], now_us: i64, core_running: bool) -> Vec<String> {
    peers
        .iter()
        .map(|(p, st)| {
            let last = st
                .last_event_us
                .map_or_else(|| "none yet".to_owned(), |t| ago(t, now_us));
            let held = if st.held > 0 {
                format!(", {} held behind a gap", st.held)
            } else {
                String::new()
            };
            let room = if st.room_id.is_some() {
                "room set up"
            } else {
                "room not set up yet"
            };
            format!(
                "{} ({}): {}; last event {last}{held}; {room}",
                p.hive,
                p.server_name,
                reachability(st, now_us, core_running)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reachability_in_words() {
        struct Case {
            name: &'static str,
            st: PeerStatus,
            running: bool,
            want: &'static str,
        }
        let now = 1_000_000_000_000;
        let at = |secs: i64| Some(now - secs * 1_000_000);
        let cases = [
            Case {
                name: "a fresh good probe",
                st: PeerStatus {
                    reachable: Some(true),
                    probed_us: at(5),
                    ..Default::default()
                },
                running: true,
                want: "reachable (checked 5 s ago)",
            },
            Case {
                name: "a fresh failed probe says why",
                st: PeerStatus {
                    reachable: Some(false),
                    probed_us: at(70),
                    error: Some("502".into()),
                    ..Default::default()
                },
                running: true,
                want: "unreachable (checked 1 min ago: 502)",
            },
            Case {
                name: "a stale probe says nothing of now",
                st: PeerStatus {
                    reachable: Some(true),
                    probed_us: at(600),
                    ..Default::default()
                },
                running: true,
                want: "unknown (last checked 10 min ago)",
            },
            Case {
                name: "never probed",
                st: PeerStatus::default(),
                running: true,
                want: "not checked yet",
            },
            Case {
                name: "no core, no probes",
                st: PeerStatus {
                    reachable: Some(true),
                    probed_us: at(5),
                    ..Default::default()
                },
                running: false,
                want: "unknown (hive-c0re is not running)",
            },
        ];
        for c in cases {
            assert_eq!(reachability(&c.st, now, c.running), c.want, "{}", c.name);
        }
        assert_eq!(ago(now - 7_200_000_000, now), "2 h ago");
        assert_eq!(
            ago(now + 5, now),
            "0 s ago",
            "a clock step back is not negative"
        );
    }
}
