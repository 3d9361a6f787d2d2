//! Recurring schedules (agent.toml `[[schedules]]`, `agent_spec/schedule.rs`): the `schedules`
//! task delivers each fire into the agent's inbox as a core event (`org.hyperhive.event` kind
//! `schedule`, with the schedule's name and prompt; the prompt is the body), through the
//! outbox, so it is said once and never lost.
//!
//! - What is due is [`due::due`] (pure): after downtime one missed fire is replayed, not a burst;
//!   a schedule newly added does not fire for the past. [`due::decide`] holds a due fire while
//!   the last one is not handled (its post in the outbox, its message queued or in a turn): at
//!   most one fire of a schedule is on its way, whatever keeps the agent from its queue.
//! - A fire is recorded (migration 014) in the same sqlite transaction as its post, by a
//!   conditional update on the last fire the round saw; its txn id is deterministic per
//!   (agent, schedule, fire time) and unique to it (`.` separates names that may hold `-`), so
//!   a re-send after a crash is the same event; a txn id already in the outbox is an error, not
//!   a fire recorded and never said.
//! - The task reads each agent's *current* spec every round: an approved config that changes
//!   the schedules takes effect when it is applied (`apply.rs` wakes the task).
//! - A stopped agent's fires are skipped, not queued: its record stays at the last fire, so when
//!   it is started again one missed fire is replayed (as after downtime). A kept agent is out
//!   of the registry: nothing fires; a revived one replays at most one fire too.
//! - `!hive schedules` lists them with their next and last fires; `!hive fire <agent>
//!   <schedule>` fires one now (audited; the grid does not move). Its txn id comes from the
//!   command's event id: a command redelivered after a crash fires once and is answered the
//!   same.

pub mod due;

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::json;

use super::Core;
use super::web::actions::replies::Reply;
use crate::agent_spec::AgentName;
use crate::agent_spec::schedule::Schedule;
use crate::store::{OutboxRow, Wanted, now_us};

/// The longest the task sleeps: a started agent's missed fire, or a clock that jumped, is seen
/// within this long even without a wake-up.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// How soon a held fire is looked at again (its last fire may have been handled since).
const HELD_POLL_US: i64 = 5_000_000;

/// The scheduler's handle: what wakes its task.
#[derive(Default)]
pub struct Scheduler {
    wake: tokio::sync::Notify,
}

/// Why `!hive fire` fired nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FireRefusal {
    #[error("{0:?} is not an agent of this hive")]
    NoAgent(String),
    #[error("{agent} has no schedule {schedule:?} (its schedules: {known})")]
    NoSchedule {
        agent: AgentName,
        schedule: String,
        known: String,
    },
}

/// The schedule `name` of `agent`'s current schedules, or why there is none (pure).
pub fn pick<'a>(
    agent: &AgentName,
    schedules: &'a [Schedule],
    name: &str,
) -> Result<&'a Schedule, FireRefusal> {
    schedules
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| FireRefusal::NoSchedule {
            agent: agent.clone(),
            schedule: name.to_owned(),
            known: if schedules.is_empty() {
                "none".to_owned()
            } else {
                schedules
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
}

/// A time as `!hive schedules` and the event data show it: `2026-12-01 09:00:00 UTC`.
pub fn show_time(us: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(us).map_or_else(
        || format!("{us} µs"),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// What a fire of `s` at `fire_us` says: the message's body (`schedule <name>: <prompt>`) and
/// its event data (pure).
pub fn fire_event(s: &Schedule, fire_us: i64, manual: bool) -> (String, serde_json::Value) {
    (
        format!("schedule {}: {}", s.name, s.prompt),
        json!({
            "schedule": s.name,
            "prompt": s.prompt,
            "when": s.when.to_string(),
            "fire_us": fire_us,
            "fired_at": show_time(fire_us),
            "manual": manual,
        }),
    )
}

/// The txn id of a scheduled fire: one per (agent, schedule, fire time). Agent and schedule
/// names are `[a-z0-9_-]`: `.` between them keeps `ops` + `daily-report` apart from
/// `ops-daily` + `report`.
pub fn fire_txn(agent: &AgentName, schedule: &str, fire_us: i64) -> String {
    format!("hh-event-schedule.{agent}.{schedule}.{fire_us}")
}

/// The txn id of `!hive fire` of `schedule` by the command event `command_event`: the same each
/// time that command is delivered, so a redelivery is the same post.
pub fn manual_txn(agent: &AgentName, schedule: &str, command_event: &str) -> String {
    use sha1::Digest;
    let digest: String = sha1::Sha1::digest(command_event.as_bytes())
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("hh-event-schedule.{agent}.{schedule}.by.{digest}")
}

/// What `!hive fire` did.
enum Fired {
    /// Fired now; `stopped`: the agent is, the message waits for it.
    Now { stopped: bool },
    /// This command had fired it already (it was redelivered after a crash).
    Before { stopped: bool },
}

impl Core {
    /// Wakes the schedules task: an agent's spec changed (an approved config applied).
    pub fn wake_schedules(&self) {
        self.schedules().wake.notify_one();
    }

    /// The post that hands `agent` a fire of `s` at `fire_us`.
    fn fire_post(
        &self,
        agent: &AgentName,
        s: &Schedule,
        fire_us: i64,
        manual: bool,
        txn: &str,
    ) -> Option<OutboxRow> {
        let (text, data) = fire_event(s, fire_us, manual);
        self.core_event(agent.as_str(), "schedule", &text, data, txn)
    }

    /// Delivers every due fire, until shutdown.
    pub async fn schedules_loop(self) {
        loop {
            let next = self.schedules_round();
            let now = now_us();
            let sleep = next.map_or(MAX_SLEEP, |t| {
                Duration::from_micros((t - now).max(0) as u64 + 1000).min(MAX_SLEEP)
            });
            tokio::select! {
                _ = self.cancel().cancelled() => return,
                _ = self.schedules().wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// One pass over every agent's schedules: each due fire recorded with its post. Returns the
    /// earliest next fire of a running agent. One agent's failure is logged and the rest go on.
    fn schedules_round(&self) -> Option<i64> {
        let mut next: Option<i64> = None;
        let mut owed = false;
        for (name, entry) in self.agents().all() {
            let spec = entry.spec();
            let running = entry.control.wanted() == Wanted::Running;
            match self.agent_fires(&name, &spec.schedules, running) {
                Ok((fired, soonest)) => {
                    owed |= fired;
                    next = [next, soonest].into_iter().flatten().min();
                }
                Err(e) => {
                    tracing::error!(agent = %name, error = %format!("{e:#}"), "could not deliver an agent's schedules");
                    let soon = now_us() + 5_000_000;
                    next = Some(next.map_or(soon, |n| n.min(soon)));
                }
            }
        }
        if owed {
            self.wake_outbox();
        }
        next
    }

    /// `agent`'s due fires, recorded; whether any was, and its next fire (`None` when stopped).
    fn agent_fires(
        &self,
        agent: &AgentName,
        schedules: &[Schedule],
        running: bool,
    ) -> anyhow::Result<(bool, Option<i64>)> {
        let now = now_us();
        let names: Vec<&str> = schedules.iter().map(|s| s.name.as_str()).collect();
        let rows = self.store().schedule_rows(agent.as_str(), &names, now)?;
        if !running {
            return Ok((false, None));
        }
        let (mut fired, mut soonest) = (false, None::<i64>);
        for (s, row) in schedules.iter().zip(&rows) {
            let last = row.last_fire_us;
            let delivery = self.last_delivery(agent, &s.name, last)?;
            let n = match due::decide(&s.when, row.since_us, last, delivery, now) {
                due::Decision::Wait { next } => next,
                due::Decision::Held { due } => {
                    tracing::debug!(agent = %agent, schedule = %s.name, due = %show_time(due), last = ?delivery, "a fire held: the last one is not handled");
                    Some(now + HELD_POLL_US)
                }
                due::Decision::Fire(fire) => {
                    let txn = fire_txn(agent, &s.name, fire);
                    // `None`: the agent left the registry since this round began.
                    let Some(post) = self.fire_post(agent, s, fire, false, &txn) else {
                        continue;
                    };
                    // A failure is this schedule's alone: the agent's others still fire.
                    let recorded = match self.store().record_fire(
                        agent.as_str(),
                        &s.name,
                        last,
                        fire,
                        &post,
                    ) {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::error!(agent = %agent, schedule = %s.name, fire = %show_time(fire), error = %format!("{e:#}"), "could not record a fire; it is tried again");
                            soonest = [soonest, Some(now + HELD_POLL_US)]
                                .into_iter()
                                .flatten()
                                .min();
                            continue;
                        }
                    };
                    if recorded {
                        tracing::info!(agent = %agent, schedule = %s.name, fire = %show_time(fire), "schedule fired");
                        fired = true;
                    }
                    due::next(&s.when, row.since_us, recorded.then_some(fire).or(last))
                }
            };
            soonest = [soonest, n].into_iter().flatten().min();
        }
        Ok((fired, soonest))
    }

    /// Where the post of `agent`'s last scheduled fire of `schedule` (at `last_fire_us`) is.
    fn last_delivery(
        &self,
        agent: &AgentName,
        schedule: &str,
        last_fire_us: Option<i64>,
    ) -> anyhow::Result<crate::store::Delivery> {
        match last_fire_us {
            None => Ok(crate::store::Delivery::Unknown),
            Some(f) => self
                .store()
                .post_delivery(agent.as_str(), &fire_txn(agent, schedule, f)),
        }
    }

    /// `!hive fire <agent> <schedule>` given by the command event `command_event`: fires it now
    /// (its grid does not move), audited with the operator `by` as the actor. The answer says
    /// what happened; a redelivered command fires nothing again and is answered the same.
    pub fn fire_command(
        &self,
        agent: &str,
        schedule: &str,
        by: &str,
        command_event: &str,
    ) -> Reply {
        let result = self.fire_now(agent, schedule, command_event);
        let (outcome, detail) = match &result {
            Ok(Fired::Now { .. }) => ("fired", schedule.to_owned()),
            Ok(Fired::Before { .. }) => (
                "fired",
                format!("{schedule} (the command redelivered: fired once, not again)"),
            ),
            Err(e) => ("refused", format!("{schedule}: {e:#}")),
        };
        // What the operator typed is kept as typed, less any secret.
        let (agent_shown, detail) = (self.secrets().redact(agent), self.secrets().redact(&detail));
        if let Err(e) = self.store().audit(&crate::store::Audit {
            actor: by,
            action: "fire",
            approval_id: None,
            agent: Some(&agent_shown),
            sha: None,
            outcome,
            detail: Some(&detail),
        }) {
            tracing::error!(agent, schedule, error = %format!("{e:#}"), "could not audit a fire");
        }
        match result {
            Ok(Fired::Now { stopped } | Fired::Before { stopped }) => Reply::done(format!(
                "🔔 Fired **{schedule}** of **{agent_shown}** now{}.",
                if stopped {
                    " (it is stopped: the message waits in its queue until it is started)"
                } else {
                    ""
                }
            )),
            Err(e) => Reply::not_done(format!("Not fired: {e:#}")),
        }
    }

    fn fire_now(&self, agent: &str, schedule: &str, command_event: &str) -> anyhow::Result<Fired> {
        let name = AgentName::parse(agent).map_err(|_| FireRefusal::NoAgent(agent.to_owned()))?;
        let entry = self
            .agents()
            .get(&name)
            .ok_or_else(|| FireRefusal::NoAgent(agent.to_owned()))?;
        let spec = entry.spec();
        let s = pick(&name, &spec.schedules, schedule)?;
        let at = now_us();
        let txn = manual_txn(&name, &s.name, command_event);
        let post = self
            .fire_post(&name, s, at, true, &txn)
            .ok_or_else(|| FireRefusal::NoAgent(agent.to_owned()))?;
        let new = self
            .store()
            .record_manual_fire(name.as_str(), &s.name, at, &post)?;
        // Tests: a crash after the fire, before the command is acked.
        crate::failpoint::exit_at("fire-before-ack");
        self.wake_outbox();
        let stopped = entry.control.wanted() == Wanted::Stopped;
        Ok(if new {
            Fired::Now { stopped }
        } else {
            Fired::Before { stopped }
        })
    }

    /// Every agent's schedules, their rule, next and last fire, in words (`!hive schedules`
    /// and the web console's schedules pane show these).
    pub fn schedule_lines(&self) -> anyhow::Result<Vec<ScheduleLine>> {
        let now = now_us();
        let mut lines = Vec::new();
        for (name, entry) in self.agents().all() {
            let spec = entry.spec();
            if spec.schedules.is_empty() {
                continue;
            }
            let stopped = entry.control.wanted() == Wanted::Stopped;
            let names: Vec<&str> = spec.schedules.iter().map(|s| s.name.as_str()).collect();
            let rows = self.store().schedule_rows(name.as_str(), &names, now)?;
            for (s, row) in spec.schedules.iter().zip(&rows) {
                let delivery = self.last_delivery(&name, &s.name, row.last_fire_us)?;
                let next = match due::decide(&s.when, row.since_us, row.last_fire_us, delivery, now)
                {
                    _ if stopped => "stopped (one missed fire when started)".to_owned(),
                    due::Decision::Held { .. } => {
                        "held (its last fire is not handled yet; then one)".to_owned()
                    }
                    due::Decision::Fire(_) => "now".to_owned(),
                    due::Decision::Wait { next: Some(t) } => show_time(t),
                    due::Decision::Wait { next: None } => "never".to_owned(),
                };
                let last = match (row.last_fire_us, row.last_manual_us) {
                    (Some(f), Some(m)) if m > f => format!("{} (by hand)", show_time(m)),
                    (None, Some(m)) => format!("{} (by hand)", show_time(m)),
                    (Some(f), _) => show_time(f),
                    (None, None) => "never".to_owned(),
                };
                lines.push(ScheduleLine {
                    agent: name.to_string(),
                    schedule: s.name.clone(),
                    when: s.when.to_string(),
                    next,
                    last,
                });
            }
        }
        Ok(lines)
    }

    /// `!hive schedules`: every agent's schedules, their rule, next and last fire.
    pub fn schedules_text(&self) -> anyhow::Result<String> {
        let lines = self.schedule_lines()?;
        if lines.is_empty() {
            return Ok("No agent has schedules (agent.toml `[[schedules]]`).".to_owned());
        }
        let mut out = String::from(
            "| agent | schedule | when | next fire | last fire |\n|---|---|---|---|---|\n",
        );
        for l in &lines {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                l.agent,
                l.schedule,
                l.when.replace('|', "\\|"),
                l.next,
                l.last
            )?;
        }
        Ok(out)
    }
}

/// One schedule of one agent as `!hive schedules` lists it: its rule, next and last fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleLine {
    pub agent: String,
    pub schedule: String,
    /// The rule (`every 1h`, `daily 09:00`, …).
    pub when: String,
    /// When it fires next, in words (`2026-12-01 09:00:00 UTC`, `now`, `held (…)`, …).
    pub next: String,
    /// When it last fired, in words (`never`, `… (by hand)`).
    pub last: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent_spec::schedule::When;

    fn s(name: &str) -> Schedule {
        Schedule {
            name: name.into(),
            when: When::Every(Duration::from_secs(3600)),
            prompt: "p".into(),
        }
    }

    #[test]
    fn which_schedule_is_fired() {
        struct Case {
            name: &'static str,
            schedules: Vec<Schedule>,
            asked: &'static str,
            want: Result<&'static str, &'static str>,
        }
        let cases = [
            Case {
                name: "a schedule it has",
                schedules: vec![s("a"), s("b")],
                asked: "b",
                want: Ok("b"),
            },
            Case {
                name: "one it has not: its schedules are listed",
                schedules: vec![s("a"), s("b")],
                asked: "c",
                want: Err("echo has no schedule \"c\" (its schedules: a, b)"),
            },
            Case {
                name: "an agent without schedules",
                schedules: vec![],
                asked: "a",
                want: Err("echo has no schedule \"a\" (its schedules: none)"),
            },
        ];
        let echo = AgentName::parse("echo").expect("valid");
        for c in cases {
            let got = pick(&echo, &c.schedules, c.asked)
                .map(|s| s.name.as_str())
                .map_err(|e| e.to_string());
            assert_eq!(got, c.want.map_err(str::to_owned), "{}", c.name);
        }
    }

    #[test]
    fn a_model_reads_a_fire_as_the_hive_s_prompt() {
        let (body, mut event) = fire_event(&s("standup"), 1_767_571_200_000_000, false);
        event["kind"] = json!("schedule");
        let msg = crate::wire::protocol::Message {
            id: 1,
            event_id: "$e".into(),
            room_id: "!r:x".into(),
            sender: "@hive:x".into(),
            body,
            attempt: 1,
            event: Some(event),
            control: None,
        };
        let prompt = crate::brain::prompt_of(&msg);
        assert!(
            prompt.starts_with(
                "hive-c0re (the hive itself, not a person) reports a `schedule` event:\n"
            ),
            "{prompt}"
        );
        assert!(prompt.ends_with("\n\nschedule standup: p"), "{prompt}");
        assert!(
            prompt.contains("\"fired_at\":\"2026-01-05 00:00:00 UTC\""),
            "{prompt}"
        );
    }

    #[test]
    fn times_and_txns() {
        assert_eq!(show_time(1_767_571_200_000_000), "2026-01-05 00:00:00 UTC");
        let echo = AgentName::parse("echo").expect("valid");
        assert_eq!(fire_txn(&echo, "a", 5), "hh-event-schedule.echo.a.5");
        assert_ne!(fire_txn(&echo, "a", 5), fire_txn(&echo, "a", 6));
    }

    #[test]
    fn txn_ids_are_unique_to_their_fire() {
        let n = |s| AgentName::parse(s).expect("valid");
        // Names may hold `-`: `ops` + `daily-report` is not `ops-daily` + `report`.
        assert_ne!(
            fire_txn(&n("ops"), "daily-report", 5),
            fire_txn(&n("ops-daily"), "report", 5)
        );
        assert_ne!(
            manual_txn(&n("ops"), "daily-report", "$e"),
            manual_txn(&n("ops-daily"), "report", "$e")
        );
        // By hand: the command's event, not the clock, so a redelivery is the same post.
        assert_eq!(
            manual_txn(&n("ops"), "a", "$cmd:x"),
            manual_txn(&n("ops"), "a", "$cmd:x")
        );
        assert_ne!(
            manual_txn(&n("ops"), "a", "$cmd:x"),
            manual_txn(&n("ops"), "a", "$other:x")
        );
        assert_ne!(
            manual_txn(&n("ops"), "a", "$cmd:x"),
            fire_txn(&n("ops"), "a", 5)
        );
        // Safe in a URL path: names, `.` and hex.
        let txn = manual_txn(&n("ops"), "a", "$cmd/+:x");
        assert!(
            txn.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "{txn}"
        );
    }
}
