//! The pages' view models: plain data, every text in them already through the secret filter
//! (`read.rs` fills them), and the few decisions drawn from them (pure, with their tables):
//! which requests are shown and with which forms ([`card_forms`]), which turn is shown
//! ([`turn_shown`]), how an elapsed time reads ([`elapsed`]), the header's counts
//! ([`Header::count`]).

use crate::c0re::agents::listing::Shown;
use crate::c0re::schedules::ScheduleLine;
use crate::store::{Approval, ApprovalKind, ApprovalState, InflightTurn, TurnOutcome};

use super::timeline::RoomMessages;

/// The fixed header: the hive's name and what needs a look.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    pub hive: String,
    pub agents: usize,
    pub thinking: usize,
    /// Open requests and questions: what waits on the operator.
    pub waiting: usize,
}

impl Header {
    /// The counts of `agents` (kept ones are not counted: they are out of the hive until
    /// revived), and `waiting` requests and questions.
    pub fn count(hive: &str, agents: &[AgentRow], waiting: usize) -> Self {
        let live = agents.iter().filter(|a| a.state != Shown::Kept);
        Self {
            hive: hive.to_owned(),
            agents: live.clone().count(),
            thinking: live.filter(|a| a.state == Shown::Thinking).count(),
            waiting,
        }
    }
}

/// One agent, as the swarm table and its page's head show it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRow {
    pub name: String,
    pub state: Shown,
    /// The turn running now ([`turn_shown`]).
    pub turn: Option<TurnNow>,
    /// Messages waiting (pending), not counting the one in flight.
    pub queued: u64,
    /// The model its config names, else its brain's kind; `-` for a kept agent.
    pub model: String,
    /// US dollars of model calls since UTC midnight.
    pub cost_today_usd: f64,
    pub crash: Option<CrashLine>,
}

/// The turn an agent runs now: whose message, since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnNow {
    /// The message's beginning, one line (filled by the reader: the row has no body).
    pub what: Option<String>,
    pub sender: String,
    pub event_id: String,
    /// When the message was handed to the harness (ms since the epoch).
    pub since_ms: i64,
    /// 1 for a first delivery; more after a crash or a restart.
    pub attempt: u32,
}

/// An agent's last crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashLine {
    pub at_ms: i64,
    /// The harness's exit (`exit status 1`, `signal 9`, …).
    pub status: String,
}

/// The turn shown for an agent: the message in flight, only while the agent is `thinking` (a
/// stopped or crashed agent's `inflight` row is a turn that will be delivered again, not one
/// that runs).
pub fn turn_shown(state: Shown, inflight: Option<InflightTurn>) -> Option<TurnNow> {
    match (state, inflight) {
        (Shown::Thinking | Shown::Stopping, Some(t)) => Some(TurnNow {
            what: None,
            sender: t.sender,
            event_id: t.event_id,
            since_ms: t.since_us.div_euclid(1000),
            attempt: t.attempt,
        }),
        _ => None,
    }
}

/// What a request's card lets the operator do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardForms {
    /// Approve or deny it (✅ / ❌ on its message).
    Vote,
    /// A purge approved and waiting for the second confirmation (`purge <name>` in its thread),
    /// or a deny.
    ConfirmPurge,
    /// Its message is not posted yet: nothing to react to.
    NotPosted,
}

/// Whether the approve of a request of `kind` asks once more: a destroy, a revive or a purge
/// (its approval stops an agent, brings one back, or starts removing its state for good); a
/// config request's whole diff is on its card, and its approval is the review itself.
pub fn approve_asks(kind: ApprovalKind) -> bool {
    kind.is_kept_state()
}

/// Whether request `a` is shown among what waits on the operator, and with which forms: a
/// filed (complete) `pending` request, or a purge `confirming`. The rest (being filed,
/// approved and applying, ended) wait on nobody.
pub fn card_forms(a: &Approval) -> Option<CardForms> {
    let posted = a.request_event.is_some();
    match a.state {
        ApprovalState::Pending if a.complete && posted => Some(CardForms::Vote),
        ApprovalState::Pending if a.complete => Some(CardForms::NotPosted),
        ApprovalState::Confirming if posted => Some(CardForms::ConfirmPurge),
        ApprovalState::Confirming => Some(CardForms::NotPosted),
        _ => None,
    }
}

/// An open request as its card shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalCard {
    pub id: i64,
    pub kind: ApprovalKind,
    pub state: ApprovalState,
    pub agent: String,
    pub requester: String,
    pub summary: String,
    /// The request's text, as its message in `#hive-approvals` shows it (the diff included).
    pub text: String,
    pub forms: CardForms,
    pub expires_ms: i64,
    /// Operators whose ✅ counts, and how many are needed.
    pub approvers: Vec<String>,
    pub required: u32,
    /// Its message in `#hive-approvals` (`matrix.to`), once posted.
    pub link: Option<String>,
}

/// An open question of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuestionCard {
    pub id: i64,
    pub agent: String,
    pub question: String,
    pub options: Vec<String>,
    /// Its message is posted in `#hive-approvals` (an answer needs it).
    pub posted: bool,
    pub expires_ms: i64,
    /// Its message (`matrix.to`), once posted.
    pub link: Option<String>,
}

/// A peer hive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRow {
    pub hive: String,
    pub server: String,
    /// The last probe's answer; `None`: not probed yet.
    pub reachable: Option<bool>,
    pub probed_ms: Option<i64>,
    /// Why the last probe failed.
    pub error: Option<String>,
    pub last_event_ms: Option<i64>,
    /// Messages held behind a gap.
    pub held: u64,
}

/// One row of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub ts_ms: i64,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub approval_id: Option<i64>,
    pub agent: Option<String>,
    pub detail: Option<String>,
}

/// The main page.
#[derive(Debug, Clone, PartialEq)]
pub struct MainView {
    pub now_ms: i64,
    pub header: Header,
    pub agents: Vec<AgentRow>,
    pub approvals: Vec<ApprovalCard>,
    pub questions: Vec<QuestionCard>,
    pub schedules: Vec<ScheduleLine>,
    pub peers: Vec<PeerRow>,
    /// Newest first.
    pub audit: Vec<AuditRow>,
}

/// One finished turn (an attempt) of an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnRow {
    pub started_ms: i64,
    pub duration_ms: i64,
    pub outcome: TurnOutcome,
    pub model: String,
    pub calls: u64,
    pub tokens: u64,
    pub cost_usd: f64,
    pub unpriced_calls: u64,
}

/// The end of an agent's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTail {
    /// No log yet.
    Missing,
    Text(String),
    /// Why it cannot be read.
    Unreadable(String),
}

/// An agent's page.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentView {
    pub now_ms: i64,
    pub header: Header,
    pub agent: AgentRow,
    /// Its description (agent.toml), if any.
    pub description: Option<String>,
    /// Its room's messages, or why they cannot be shown (no room yet).
    pub timeline: Result<RoomMessages, String>,
    /// Newest first.
    pub turns: Vec<TurnRow>,
    pub log: LogTail,
}

/// An elapsed time as the page shows it (the page's script keeps it running in the same form):
/// `12 s`, `3 min 4 s`, `2 h 5 min`. A time in the future (clocks apart) is `0 s`.
pub fn elapsed(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_reads_like_the_script_writes_it() {
        struct Case {
            name: &'static str,
            ms: i64,
            want: &'static str,
        }
        let cases = [
            Case {
                name: "under a second",
                ms: 999,
                want: "0 s",
            },
            Case {
                name: "seconds",
                ms: 42_500,
                want: "42 s",
            },
            Case {
                name: "minutes and seconds",
                ms: 184_000,
                want: "3 min 4 s",
            },
            Case {
                name: "hours and minutes",
                ms: (2 * 3600 + 5 * 60 + 7) * 1000,
                want: "2 h 5 min",
            },
            Case {
                name: "a clock ahead of ours",
                ms: -5_000,
                want: "0 s",
            },
        ];
        for c in cases {
            assert_eq!(elapsed(c.ms), c.want, "{}", c.name);
        }
    }

    fn inflight() -> InflightTurn {
        InflightTurn {
            inbox_id: 3,
            event_id: "$m".into(),
            sender: "@op:hs".into(),
            since_us: 1_700_000_000_123_456,
            attempt: 2,
        }
    }

    #[test]
    fn the_turn_shown_and_when_it_began() {
        struct Case {
            name: &'static str,
            state: Shown,
            inflight: Option<InflightTurn>,
            want: Option<i64>,
        }
        let cases = [
            Case {
                name: "thinking: its message's hand-over, in ms",
                state: Shown::Thinking,
                inflight: Some(inflight()),
                want: Some(1_700_000_000_123),
            },
            Case {
                name: "stopping: the turn still runs",
                state: Shown::Stopping,
                inflight: Some(inflight()),
                want: Some(1_700_000_000_123),
            },
            Case {
                name: "crashed: the row waits for a redelivery, no turn runs",
                state: Shown::Crashed,
                inflight: Some(inflight()),
                want: None,
            },
            Case {
                name: "idle",
                state: Shown::Idle,
                inflight: None,
                want: None,
            },
            Case {
                name: "thinking, the row not read (gone meanwhile)",
                state: Shown::Thinking,
                inflight: None,
                want: None,
            },
        ];
        for c in cases {
            let got = turn_shown(c.state, c.inflight);
            assert_eq!(got.as_ref().map(|t| t.since_ms), c.want, "{}", c.name);
            if let Some(t) = got {
                assert_eq!((t.attempt, t.sender.as_str()), (2, "@op:hs"), "{}", c.name);
            }
        }
    }

    fn approval(state: ApprovalState, complete: bool, posted: bool) -> Approval {
        Approval {
            id: 7,
            kind: ApprovalKind::ApplyCommit,
            agent: "echo".into(),
            sha: "abc".into(),
            requester: "hm1nd".into(),
            summary: "s".into(),
            state,
            required: 1,
            created_us: 0,
            expires_us: 0,
            request_event: posted.then(|| "$req".to_owned()),
            decided_us: None,
            reason: None,
            deploy: None,
            complete,
            outcome_told: false,
        }
    }

    #[test]
    fn which_requests_are_shown_and_their_forms() {
        use ApprovalState as S;
        struct Case {
            name: &'static str,
            a: Approval,
            want: Option<CardForms>,
        }
        let cases = [
            Case {
                name: "pending and posted: approve or deny",
                a: approval(S::Pending, true, true),
                want: Some(CardForms::Vote),
            },
            Case {
                name: "pending, not posted yet: shown, nothing to react to",
                a: approval(S::Pending, true, false),
                want: Some(CardForms::NotPosted),
            },
            Case {
                name: "still being filed: not shown",
                a: approval(S::Pending, false, false),
                want: None,
            },
            Case {
                name: "a purge waiting for its confirmation",
                a: approval(S::Confirming, true, true),
                want: Some(CardForms::ConfirmPurge),
            },
            Case {
                name: "approved and applying: waits on nobody",
                a: approval(S::Applying, true, true),
                want: None,
            },
            Case {
                name: "approved",
                a: approval(S::Approved, true, true),
                want: None,
            },
            Case {
                name: "denied",
                a: approval(S::Denied, true, true),
                want: None,
            },
            Case {
                name: "expired",
                a: approval(S::Expired, true, true),
                want: None,
            },
        ];
        for c in cases {
            assert_eq!(card_forms(&c.a), c.want, "{}", c.name);
        }
    }

    fn row(name: &str, state: Shown) -> AgentRow {
        AgentRow {
            name: name.into(),
            state,
            turn: None,
            queued: 0,
            model: "m".into(),
            cost_today_usd: 0.0,
            crash: None,
        }
    }

    #[test]
    fn the_header_counts() {
        let agents = [
            row("a", Shown::Thinking),
            row("b", Shown::Idle),
            row("c", Shown::Thinking),
            row("k", Shown::Kept),
        ];
        assert_eq!(
            Header::count("hive", &agents, 3),
            Header {
                hive: "hive".into(),
                agents: 3,
                thinking: 2,
                waiting: 3
            },
            "a kept agent is not counted"
        );
    }
}
