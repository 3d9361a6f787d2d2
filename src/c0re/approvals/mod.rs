//! Approvals: requests in `#hive-approvals`, decided by operators' reactions, applied exactly
//! once (docs/approvals.md).
//!
//! The request message is a view; the record is the `approvals` table (id, kind, agent, full sha,
//! requester, expiry). A reaction counts only if it is on the request's own event, from a
//! configured operator on this server, with the power level the config asks for in the
//! approvals room. Everything else is ignored, and reported where it looks like an attempt.
//! Reactions and redactions reach this module through the durable `!approvals` queue, typed
//! ([`ApprovalSignal`]), so the transaction handler never does any of this work.
//!
//! Decide, then act: the loop here gathers the facts of each signal (the request or question
//! it is about, the sender's standing and, only when it decides, the approvals room's power
//! levels), asks [`decide`] what they mean, and carries out its [`decide::Outcome`].
//! - [`decide`]: pure — who may vote, what a reaction means, when a request is decided or
//!   expires; the rules in its doc comment, a table of cases beside it.
//! - `signals`: one queued signal carried from its facts to its effect (and dead letters).
//! - [`filing`]: what is checked before an operator is asked; the request's row and message.
//! - [`questions`]: agents' questions for the operators.
//! - `apply`: an approved request applied once: the new config, the restart or the spawn.
//! - [`kept`]: destroy, revive and purge (with its second confirmation).
//! - [`text`]: the request as the operator reads it, a question, an outcome (snapshot-tested).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ruma::events::MessageLikeEventType;
use ruma::serde::Raw;
use ruma::{OwnedTransactionId, UserId};
use serde_json::json;
use tokio::sync::Notify;

use super::routing::ApprovalSignal;
use super::{APPROVALS_QUEUE, Core, outbound, registration};
use crate::agent_spec::AgentName;
use crate::c0re::rooms::RoomKey;
use crate::matrix::client::is_permanent;
use crate::store::{Approval, ApprovalState, Audit};
use decide::{Action, PowerLevels};

mod apply;
pub mod decide;
pub mod filing;
pub mod kept;
pub mod questions;
pub mod refusal;
pub mod rollback;
mod signals;
mod spawn_files;
pub mod text;

pub use filing::{
    MAX_SUMMARY, Refusal, RequestRefused, file_apply_commit, file_init_config, grantable, spawnable,
};
pub use questions::AskError;
pub use rollback::{Rollback, file_rollback};

/// How long the approvals room's power levels are trusted from the cache. A power-level event
/// in that room clears the cache at once (`Core::accept`); this bounds it regardless.
const POWER_LEVELS_TTL: Duration = Duration::from_secs(60);

/// Deliveries of one reaction or redaction in `#hive-approvals` before it is given up (with
/// backoff: about 17 minutes). A decision given up fails its request closed: it is cancelled.
const MAX_SIGNAL_ATTEMPTS: u32 = 10;
/// A request whose filing has not finished after this long was left by a filer that died.
const STALE_FILING_US: i64 = 10 * 60 * 1_000_000;

/// The approvals service's own state, held by the core: what wakes its loop, and the approvals
/// room's power levels as last fetched.
#[derive(Default)]
pub struct Approvals {
    /// Wakes the approvals loop: a reaction arrived, a request was filed, an apply finished.
    notify: Notify,
    /// The approvals room's power levels and when they were fetched (cleared when they change).
    power: Mutex<Option<(Instant, PowerLevels)>>,
}

impl Approvals {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes the approvals loop.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// The approvals room's power levels changed: forget them, before any reaction behind the
    /// change is judged.
    pub fn power_levels_changed(&self) {
        *self.power.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn cached_power_levels(&self) -> Option<PowerLevels> {
        self.power
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(at, _)| at.elapsed() < POWER_LEVELS_TTL)
            .map(|(_, pl)| pl.clone())
    }

    fn cache_power_levels(&self, pl: PowerLevels) {
        *self.power.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), pl));
    }
}

impl Core {
    /// Wakes the approvals loop (the CLI filed a request).
    pub fn wake_approvals(&self) {
        self.approvals().wake();
    }

    /// The approvals loop: posts filed requests, counts reactions, expires, applies. One at a
    /// time, in order; woken by `Notify`, never polling.
    pub async fn approvals_loop(self) {
        if let Err(e) = self.recover_applying().await {
            tracing::error!(error = %format!("{e:#}"), "could not recover interrupted applies");
        }
        let mut failures = 0u32;
        loop {
            let round = self.approvals_round().await;
            // Requests and questions posted, decided or expired: the status message lists them.
            self.console().changed();
            let retry = match round {
                Ok(None) => {
                    failures = 0;
                    None
                }
                Ok(Some(after)) => Some(after),
                Err(e) => {
                    // sqlite or the homeserver failed mid-round: nothing was lost (every step
                    // is a state in the store); try again soon.
                    failures += 1;
                    tracing::error!(error = %format!("{e:#}"), "approvals round failed; retrying");
                    Some(Duration::from_micros(
                        crate::store::outbox_backoff_us(failures) as u64,
                    ))
                }
            };
            let next = [
                self.store().next_expiry(),
                self.store().next_question_expiry(),
                self.store().next_reminder(),
            ];
            let mut unknown = false;
            let next_expiry = next
                .into_iter()
                .filter_map(|r| {
                    r.unwrap_or_else(|e| {
                        // Not "nothing is due": look again soon.
                        tracing::error!(error = %format!("{e:#}"), "cannot read when the next expiry is");
                        unknown = true;
                        None
                    })
                })
                .min();
            let next_expiry = if unknown {
                let soon = crate::store::now_us() + 5_000_000;
                Some(next_expiry.map_or(soon, |t| t.min(soon)))
            } else {
                next_expiry
            };
            let sleep = next_expiry.map_or(Duration::from_secs(3600), |t| {
                Duration::from_micros((t - crate::store::now_us()).max(0) as u64 + 1000)
            });
            let sleep = retry.map_or(sleep, |r| r.min(sleep));
            tokio::select! {
                _ = self.cancel().cancelled() => return,
                _ = self.approvals().notify.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// One pass over everything the approvals loop owes. Each request, question and decision is
    /// handled on its own: one that cannot be posted fails alone (its requester told, the audit
    /// written), never the loop. Returns when to come back if something must be retried.
    async fn approvals_round(&self) -> anyhow::Result<Option<Duration>> {
        let mut retry: Option<Duration> = None;
        let mut again = |after: Duration| retry = Some(retry.map_or(after, |r| r.min(after)));
        for a in self.store().cancel_stale_filings(STALE_FILING_US)? {
            tracing::warn!(id = a.id, "cancelled a request whose filing never finished");
        }
        for a in self.store().unposted_approvals()? {
            if let Err(e) = self.post_request(&a).await {
                if is_permanent(&e) {
                    self.refuse_posting(&a, &e).await?;
                } else {
                    tracing::warn!(id = a.id, error = %format!("{e:#}"), "could not post a request yet");
                    again(Duration::from_secs(5));
                    break;
                }
            }
        }
        if self.deliver_reminders()? > 0 {
            self.wake_outbox();
        }
        if let Some(after) = self.post_questions().await? {
            again(after);
        }
        self.expire_questions().await?;
        // Reactions and redactions, strictly in order: a decision that cannot be handled now
        // (the homeserver is away) holds back the ones after it, so a ✓ can never overtake the
        // ❌ before it, and no apply starts while one is held (it may be the withdrawal or the
        // cancellation of what would be applied).
        let mut held = false;
        loop {
            let (item, dead) = self
                .store()
                .take_next(APPROVALS_QUEUE, MAX_SIGNAL_ATTEMPTS)?;
            for d in dead {
                self.give_up_signal(&d).await?;
            }
            let Some(item) = item else { break };
            let signal: ApprovalSignal = match item.body.parse() {
                Ok(s) => s,
                Err(e) => {
                    // Written by the core itself: cannot happen, but never loop on it, and
                    // never read it as something else.
                    self.unreadable_signal(&item, &e).await?;
                    continue;
                }
            };
            match self
                .handle_signal(&item.event_id, &item.sender, &signal)
                .await
            {
                Ok(()) => {
                    self.store().ack(item.id)?;
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), event_id = %item.event_id, attempt = item.attempts, "could not handle an approvals event; it will be retried");
                    self.store().release(item.id)?;
                    again(Duration::from_micros(
                        crate::store::outbox_backoff_us(item.attempts) as u64,
                    ));
                    held = true;
                    break;
                }
            }
        }
        for a in self.store().expire_due()? {
            self.thread(
                &a,
                &format!("⌛ Request #{} expired without a decision.", a.id),
            )
            .await;
        }
        if !held {
            for a in self.store().approvals_in(ApprovalState::Approved)? {
                if a.kind == crate::store::ApprovalKind::Purge {
                    self.ask_purge_confirmation(&a).await?;
                } else if self.store().start_apply(a.id)? {
                    self.apply(a).await;
                }
            }
        }
        self.tell_outcomes()?;
        Ok(retry)
    }

    /// Tells every requesting agent whose request ended how it ended (through the outbox, once).
    fn tell_outcomes(&self) -> anyhow::Result<()> {
        let mut told = false;
        for a in self.store().untold_outcomes()? {
            let text = text::outcome(&a);
            let post = AgentName::parse(&a.requester)
                .ok()
                .filter(|n| self.agents().get(n).is_some())
                .and_then(|_| {
                    self.core_event(
                        &a.requester,
                        "approval_outcome",
                        &format!(
                            "approval_outcome: request #{} ({} `{}`): {text}",
                            a.id, a.agent, a.sha
                        ),
                        json!({ "approval_id": a.id, "agent": a.agent, "sha": a.sha,
                                "outcome": a.state.as_str(), "detail": text }),
                        &format!("hh-event-outcome-{}", a.id),
                    )
                });
            told |= post.is_some();
            self.store().tell_outcome(a.id, post.as_ref())?;
        }
        if told {
            self.wake_outbox();
        }
        Ok(())
    }

    /// A refused attempt: audited, and said in `#hive-c0re`.
    async fn report(&self, actor: &UserId, action: Action, a: Option<&Approval>, what: &str) {
        let action = action.as_str();
        tracing::warn!(%actor, action, what, "approval attempt ignored");
        if let Err(e) = self.store().audit(&Audit {
            actor: actor.as_str(),
            action,
            approval_id: a.map(|a| a.id),
            agent: a.map(|a| a.agent.as_str()),
            sha: a.map(|a| a.sha.as_str()),
            outcome: "ignored",
            detail: Some(what),
        }) {
            tracing::error!(error = %format!("{e:#}"), "could not audit an ignored approval attempt");
        }
        self.notice(None, &format!("⚠️ {actor} {what}.")).await;
    }

    /// A message in the request's thread.
    pub(super) async fn thread(&self, a: &Approval, text: &str) {
        if !self
            .in_approvals_thread(a.request_event.as_deref(), text)
            .await
        {
            self.notice(None, text).await;
        }
    }

    /// Posts `text` as a notice in the thread of event `root` in `#hive-approvals` (a request
    /// or a question). False if there is no such thread to post in yet.
    pub(super) async fn in_approvals_thread(&self, root: Option<&str>, text: &str) -> bool {
        let (Some(room), Some(root)) = (self.rooms().get(&RoomKey::Approvals), root) else {
            return false;
        };
        let mut content = outbound::message_content(text, None, None, true);
        content["m.relates_to"] = json!({
            "rel_type": "m.thread",
            "event_id": root,
            "is_falling_back": true,
            "m.in_reply_to": { "event_id": root },
        });
        let txn = format!("hh-thread-{}", registration::random_secret(16));
        if let Err(e) = self.send_raw(&room, None, &txn, &content).await {
            tracing::warn!(error = %format!("{e:#}"), "could not post in an approvals thread");
        }
        true
    }

    /// The core's own reaction on a request (⏳ ✅ ❌), showing its state at a glance.
    pub(super) async fn react(&self, a: &Approval, key: &str) {
        let (Some(room), Some(req)) = (
            self.rooms().get(&RoomKey::Approvals),
            a.request_event.clone(),
        ) else {
            return;
        };
        let content = json!({ "m.relates_to": {
            "rel_type": "m.annotation", "event_id": req, "key": key } });
        let req = ruma::api::client::message::send_message_event::v3::Request::new_raw(
            room,
            OwnedTransactionId::from(format!("hh-react-{}-{key}", a.id)),
            MessageLikeEventType::Reaction,
            Raw::from_json(serde_json::value::to_raw_value(&content).expect("json serialises")),
        );
        if let Err(e) = self.client().send(req, None).await {
            tracing::warn!(error = %e, "could not react on a request");
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::matrix::client::is_permanent;

    #[test]
    fn which_homeserver_failures_are_for_good() {
        let server = |status| {
            anyhow::Error::new(crate::matrix::MatrixError::Server {
                path: "/send".into(),
                status,
                errcode: "M_X".into(),
                message: String::new(),
            })
            .context("cannot send")
        };
        assert!(is_permanent(&server(413)));
        assert!(is_permanent(&server(400)));
        assert!(is_permanent(&server(403)));
        assert!(!is_permanent(&server(429)), "rate limited: later");
        assert!(!is_permanent(&server(502)));
        assert!(!is_permanent(&anyhow::anyhow!("no approvals room")));
    }
}
