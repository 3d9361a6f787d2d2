//! Approvals: requests in `#hive-approvals`, decided by operators' reactions, applied exactly
//! once (docs/approvals.md).
//!
//! The request message is a view; the record is the `approvals` table (id, kind, agent, full sha,
//! requester, expiry). A reaction counts only if it is on the request's own event, from a
//! configured operator on this server, with the power level the config asks for in the
//! approvals room. Everything else is ignored, and reported where it looks like an attempt.
//! Reactions and redactions reach this module through the durable `!approvals` queue, so the
//! transaction handler never does any of this work.

use std::time::Duration;

use anyhow::Context;
use ruma::events::MessageLikeEventType;
use ruma::serde::Raw;
use ruma::{OwnedTransactionId, UserId};
use serde_json::json;

use super::{APPROVALS_QUEUE, Core};
use crate::agent_spec::AgentName;
use crate::configrepo::{ConfigRepo, parse_sha};
use crate::store::{Approval, ApprovalState, Audit, NewApproval, Verdict, VoteOutcome};

/// How long the approvals room's power levels are trusted from the cache. A power-level event
/// in that room clears the cache at once (`Core::accept`); this bounds it regardless.
const POWER_LEVELS_TTL: Duration = Duration::from_secs(60);

/// Most bytes of a request's summary (it is shown in the request; the config carries the rest).
pub const MAX_SUMMARY: usize = 1000;
/// Deliveries of one reaction or redaction in `#hive-approvals` before it is given up (with
/// backoff: about 17 minutes). A decision given up fails its request closed: it is cancelled.
const MAX_SIGNAL_ATTEMPTS: u32 = 10;
/// A request whose filing has not finished after this long was left by a filer that died.
const STALE_FILING_US: i64 = 10 * 60 * 1_000_000;

use crate::matrix::client::is_permanent;

/// Why a request was refused before it reached the operator.
#[derive(Debug)]
pub struct RequestRefused(pub String);

impl Core {
    /// Files a request to apply commit `sha` to `agent`'s config: snapshots the commit into the
    /// core's repo (so the proposed side can no longer change it), validates it, and posts the
    /// request. `requester` is an agent name or a Matrix ID.
    pub async fn request_apply_commit(
        &self,
        requester: &str,
        agent: &str,
        sha: &str,
        summary: &str,
    ) -> Result<i64, RequestRefused> {
        self.request_rate(requester)?;
        let (who, what, commit, why) = (
            requester.to_owned(),
            agent.to_owned(),
            sha.to_owned(),
            summary.to_owned(),
        );
        self.file(
            &format!("{requester}'s request to apply `{sha}` to **{agent}**"),
            move |data, cfg| file_apply_commit(data, cfg, &who, &what, &commit, &why),
        )
        .await
    }

    /// A manager asks to spawn agent `name`: its config is seeded from the template on the
    /// proposed side, and the operators are asked.
    pub async fn request_init_config(
        &self,
        requester: &str,
        name: &str,
        summary: &str,
    ) -> Result<i64, RequestRefused> {
        self.request_rate(requester)?;
        if let Ok(n) = AgentName::parse(name)
            && self.agent(&n).is_some()
        {
            return Err(RequestRefused(format!(
                "{n} is already an agent of this hive"
            )));
        }
        let (who, what, why) = (requester.to_owned(), name.to_owned(), summary.to_owned());
        self.file(
            &format!("{requester}'s request to spawn `{name}`"),
            move |data, cfg| file_init_config(data, cfg, &who, &what, &why),
        )
        .await
    }

    /// An agent's requests count against its question rate (they too land in front of the
    /// operators): a manager gone wrong cannot flood `#hive-approvals`.
    fn request_rate(&self, requester: &str) -> Result<(), RequestRefused> {
        match AgentName::parse(requester) {
            Ok(agent) if self.agent(&agent).is_some() => self
                .rate(&agent, super::limits::Kind::Question)
                .map_err(|r| RequestRefused(r.to_string())),
            _ => Ok(()),
        }
    }

    /// Runs a filing (git and sqlite: off the async workers), then wakes the approvals loop, or
    /// says in `#hive-c0re` why `what` was refused.
    async fn file(
        &self,
        what: &str,
        filing: impl FnOnce(
            &std::path::Path,
            &crate::config::Config,
        ) -> anyhow::Result<Result<i64, String>>
        + Send
        + 'static,
    ) -> Result<i64, RequestRefused> {
        let (data, cfg) = (self.data_dir().to_owned(), self.cfg().clone());
        let filed = tokio::task::spawn_blocking(move || filing(&data, &cfg))
            .await
            .map_err(|e| RequestRefused(e.to_string()))?
            .map_err(|e| RequestRefused(format!("{e:#}")))?;
        match filed {
            Ok(id) => {
                self.inner.approvals_notify.notify_one();
                Ok(id)
            }
            Err(reason) => {
                self.notice(None, &format!("🚫 {what} was refused: {reason}"))
                    .await;
                Err(RequestRefused(reason))
            }
        }
    }

    /// An agent's question for the operators: posted in `#hive-approvals`; the answer (an
    /// option's keycap reaction or a reply in the thread), or the timeout, comes back to the
    /// agent as an `operator_answer` message.
    pub fn ask_operator(
        &self,
        agent: &AgentName,
        question: &str,
        options: &[String],
        ttl_secs: Option<u64>,
    ) -> Result<i64, String> {
        let question = question.trim();
        if question.is_empty() || question.len() > 4000 {
            return Err("the question must be 1 to 4000 bytes".into());
        }
        if options.len() > 9 || options.iter().any(|o| o.trim().is_empty() || o.len() > 200) {
            return Err("at most 9 options, each 1 to 200 bytes".into());
        }
        self.rate(agent, super::limits::Kind::Question)
            .map_err(|r| r.to_string())?;
        let ttl = ttl_secs.unwrap_or(3600).clamp(1, 7 * 86_400);
        let id = self
            .store()
            .create_question(
                agent.as_str(),
                question,
                options,
                (ttl as i64).saturating_mul(1_000_000),
            )
            .map_err(|e| format!("{e:#}"))?;
        self.inner.approvals_notify.notify_one();
        Ok(id)
    }

    async fn post_question(&self, q: &crate::store::Question) -> anyhow::Result<()> {
        let room = self
            .room(&super::rooms::RoomKey::Approvals)
            .context("no approvals room")?;
        let choices: Vec<String> = q
            .options
            .iter()
            .enumerate()
            .map(|(i, o)| format!("{} {o}", super::routing::keycap(i)))
            .collect();
        let how = if choices.is_empty() {
            "Reply in this thread to answer.".to_owned()
        } else {
            format!("React {} — or reply in this thread.", choices.join(" · "))
        };
        let text = format!(
            "**Question #{}** from **{}**:\n\n> {}\n\n{how} Expires at {} (unix time).",
            q.id,
            q.agent,
            q.question.replace('\n', "\n> "),
            q.expires_us / 1_000_000
        );
        let content = super::outbound::message_content(&text, None, None, false);
        let ev = self
            .send_raw(&room, None, &format!("hh-question-{}", q.id), &content)
            .await?;
        self.store().set_question_event(q.id, ev.as_str())?;
        Ok(())
    }

    async fn answer(&self, q: &crate::store::Question, answer: &str, by: &UserId) {
        let tell = self.core_event(
            &q.agent,
            "operator_answer",
            &format!("operator_answer: question #{}: {answer} (from {by})", q.id),
            json!({ "question_id": q.id, "answer": answer, "by": by.as_str() }),
            &format!("hh-event-question-{}", q.id),
        );
        match self
            .store()
            .answer_question(q.id, answer, by.as_str(), tell.as_ref())
        {
            Ok(true) => {
                self.wake_outbox();
                self.in_approvals_thread(
                    q.request_event.as_deref(),
                    &format!("Answered by {by}: {answer}"),
                )
                .await;
            }
            Ok(false) => {
                self.in_approvals_thread(
                    q.request_event.as_deref(),
                    &format!(
                        "Question #{} is closed ({}); {by}'s answer was not passed on.",
                        q.id, q.state
                    ),
                )
                .await;
            }
            Err(e) => tracing::error!(error = %format!("{e:#}"), "could not record an answer"),
        }
    }

    /// Wakes the approvals loop (the CLI filed a request).
    pub fn wake_approvals(&self) {
        self.inner.approvals_notify.notify_one();
    }

    /// The approvals loop: posts filed requests, counts reactions, expires, applies. One at a
    /// time, in order; woken by `Notify`, never polling.
    pub async fn approvals_loop(self) {
        if let Err(e) = self.recover_applying().await {
            tracing::error!(error = %format!("{e:#}"), "could not recover interrupted applies");
        }
        let mut failures = 0u32;
        loop {
            let retry = match self.approvals_round().await {
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
            let next_expiry = [
                self.store().next_expiry().ok().flatten(),
                self.store().next_question_expiry().ok().flatten(),
                self.store().next_reminder().ok().flatten(),
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = next_expiry.map_or(Duration::from_secs(3600), |t| {
                Duration::from_micros((t - crate::store::now_us()).max(0) as u64 + 1000)
            });
            let sleep = retry.map_or(sleep, |r| r.min(sleep));
            tokio::select! {
                _ = self.cancel().cancelled() => return,
                _ = self.inner.approvals_notify.notified() => {}
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
        for q in self.store().unposted_questions()? {
            if let Err(e) = self.post_question(&q).await {
                if is_permanent(&e) {
                    self.refuse_question(&q, &e).await?;
                } else {
                    tracing::warn!(id = q.id, error = %format!("{e:#}"), "could not post a question yet");
                    again(Duration::from_secs(5));
                    break;
                }
            }
        }
        let expired = self.store().expire_questions(|q| {
            self.core_event(
                &q.agent,
                "operator_answer",
                &format!(
                    "operator_answer: question #{} expired without an answer",
                    q.id
                ),
                json!({ "question_id": q.id, "expired": true }),
                &format!("hh-event-question-{}", q.id),
            )
        })?;
        if !expired.is_empty() {
            self.wake_outbox();
        }
        for q in expired {
            self.in_approvals_thread(q.request_event.as_deref(), "⌛ Expired without an answer.")
                .await;
        }
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
            let signal: serde_json::Value = match serde_json::from_str(&item.body) {
                Ok(v) => v,
                Err(e) => {
                    // Written by the core itself: cannot happen, but never loop on it.
                    tracing::error!(error = %e, event_id = %item.event_id, "unreadable approvals signal");
                    self.store().fail(item.id, &format!("unreadable: {e}"))?;
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
                if self.store().start_apply(a.id)? {
                    self.apply(a).await;
                }
            }
        }
        self.tell_outcomes()?;
        Ok(retry)
    }

    /// A request the homeserver refused to show (too large, forbidden): it fails alone, and
    /// says so where the operator and its requester look.
    async fn refuse_posting(&self, a: &Approval, e: &anyhow::Error) -> anyhow::Result<()> {
        let reason = format!("it could not be posted in #hive-approvals: {e:#}");
        tracing::error!(id = a.id, %reason, "request refused");
        self.store().cancel_approval(a.id, "hive-c0re", &reason)?;
        self.notice(
            None,
            &format!(
                "🚫 Request #{} ({} `{}` for **{}**) was cancelled: {reason}. `hive approvals --diff {}` shows it.",
                a.id, a.kind, a.sha, a.agent, a.id
            ),
        )
        .await;
        Ok(())
    }

    /// A question the homeserver refused to show: it ends for its agent as "not asked".
    async fn refuse_question(
        &self,
        q: &crate::store::Question,
        e: &anyhow::Error,
    ) -> anyhow::Result<()> {
        let reason = format!("{e:#}");
        tracing::error!(id = q.id, %reason, "question refused");
        let tell = self.core_event(
            &q.agent,
            "operator_answer",
            &format!(
                "operator_answer: question #{} could not be posted and was not asked: {reason}",
                q.id
            ),
            json!({ "question_id": q.id, "expired": true, "error": reason }),
            &format!("hh-event-question-{}", q.id),
        );
        self.store()
            .close_question(q.id, "expired", tell.as_ref())?;
        self.wake_outbox();
        Ok(())
    }

    /// A reaction or redaction that could not be handled in [`MAX_SIGNAL_ATTEMPTS`] tries: kept
    /// in the queue database as dead, said in `#hive-approvals`, and the request it was about is
    /// failed closed (cancelled) rather than left to a later ✓.
    async fn give_up_signal(&self, item: &crate::store::InboxItem) -> anyhow::Result<()> {
        tracing::error!(event_id = %item.event_id, sender = %item.sender, "gave up an approvals event");
        let signal: serde_json::Value = serde_json::from_str(&item.body).unwrap_or_default();
        let target = signal["target"]
            .as_str()
            .or_else(|| signal["redacts"].as_str())
            .unwrap_or_default();
        let request = match self.store().approval_by_request_event(target)? {
            Some(a) => Some(a),
            // A redacted vote names the reaction: find its request through the vote.
            None => self.store().approval_of_vote(target)?,
        };
        let mut text = format!(
            "☠️ {} from {} ({}) could not be handled after {} attempts; it is kept as a dead letter.",
            signal["kind"].as_str().unwrap_or("an event"),
            item.sender,
            item.event_id,
            item.attempts
        );
        if let Some(a) = request.filter(|a| !a.state.is_final())
            && self.store().cancel_approval(
                a.id,
                "hive-c0re",
                "a decision on it could not be processed",
            )?
        {
            text.push_str(&format!(
                " Request #{} is cancelled so nothing is applied without that decision: request it again.",
                a.id
            ));
        }
        match self.room(&super::rooms::RoomKey::Approvals) {
            Some(room) => self.notice(Some(room), &text).await,
            None => self.notice(None, &text).await,
        }
        Ok(())
    }

    /// Tells every requesting agent whose request ended how it ended (through the outbox, once).
    fn tell_outcomes(&self) -> anyhow::Result<()> {
        let mut told = false;
        for a in self.store().untold_outcomes()? {
            let text = match a.state {
                ApprovalState::Applied if a.kind == "init_config" => {
                    format!("{} is spawned", a.agent)
                }
                ApprovalState::Applied => {
                    format!("applied as deploy/{}", a.deploy.unwrap_or_default())
                }
                state => format!(
                    "{state}{}",
                    a.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
            };
            let post = AgentName::parse(&a.requester)
                .ok()
                .filter(|n| self.agent(n).is_some())
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

    async fn handle_signal(
        &self,
        event_id: &str,
        sender: &str,
        signal: &serde_json::Value,
    ) -> anyhow::Result<()> {
        let sender = UserId::parse(sender).context("bad sender")?;
        match signal["kind"].as_str() {
            Some("reaction") => {
                let target = signal["target"].as_str().unwrap_or_default();
                let key = signal["key"].as_str().unwrap_or_default();
                self.handle_reaction(event_id, &sender, target, key).await
            }
            Some("reply") => {
                let target = signal["target"].as_str().unwrap_or_default();
                let body = signal["body"].as_str().unwrap_or_default().trim();
                if let Some(q) = self.store().question_by_event(target)? {
                    if let Some(why) = self.not_an_approver(&sender).await? {
                        self.report(
                            &sender,
                            "answer",
                            None,
                            &format!("answered question #{}: ignored, {why}", q.id),
                        )
                        .await;
                    } else if !body.is_empty() {
                        self.answer(&q, body, &sender).await;
                    }
                }
                Ok(())
            }
            Some("redaction") => {
                let redacts = signal["redacts"].as_str().unwrap_or_default();
                self.handle_redaction(&sender, redacts).await
            }
            _ => Ok(()),
        }
    }

    /// Why `user` may not decide approvals, or `None` if they may.
    async fn not_an_approver(&self, user: &UserId) -> anyhow::Result<Option<String>> {
        if let Some(agent) = self
            .cfg()
            .agent_of(user)
            .filter(|n| self.agent(n).is_some())
        {
            return Ok(Some(format!("{user} is an agent ({agent})")));
        }
        if user.server_name() != self.cfg().server_name {
            return Ok(Some(format!("{user} is on another server")));
        }
        if !self.cfg().is_operator(user) {
            return Ok(Some(format!("{user} is not an operator")));
        }
        let level = self.power_level_in_approvals(user).await?;
        let min = self.cfg().approver_min_power_level;
        if level < min {
            return Ok(Some(format!(
                "{user} has power level {level} in the approvals room, below {min}"
            )));
        }
        Ok(None)
    }

    async fn power_level_in_approvals(&self, user: &UserId) -> anyhow::Result<i64> {
        let cached = self
            .inner
            .approvals_power
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(at, _)| at.elapsed() < POWER_LEVELS_TTL)
            .map(|(_, pl)| pl.clone());
        let pl = match cached {
            Some(pl) => pl,
            None => {
                if crate::failpoint::fails("power-levels") {
                    anyhow::bail!("failpoint power-levels: the homeserver is away");
                }
                let room = self
                    .room(&super::rooms::RoomKey::Approvals)
                    .context("no approvals room")?;
                let pl = self.power_levels(&room).await?;
                *self
                    .inner
                    .approvals_power
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) =
                    Some((std::time::Instant::now(), pl.clone()));
                pl
            }
        };
        Ok(pl
            .pointer(&format!(
                "/users/{}",
                user.as_str().replace('~', "~0").replace('/', "~1")
            ))
            .and_then(|v| v.as_i64())
            .or_else(|| pl.get("users_default").and_then(|v| v.as_i64()))
            .unwrap_or(0))
    }

    async fn handle_reaction(
        &self,
        reaction: &str,
        sender: &UserId,
        target: &str,
        key: &str,
    ) -> anyhow::Result<()> {
        if let Some(q) = self.store().question_by_event(target)? {
            let Some(choice) = super::routing::option_of(key).and_then(|i| q.options.get(i)) else {
                return Ok(());
            };
            if let Some(why) = self.not_an_approver(sender).await? {
                self.report(
                    sender,
                    "answer",
                    None,
                    &format!("reacted {key} to question #{}: ignored, {why}", q.id),
                )
                .await;
                return Ok(());
            }
            let choice = choice.clone();
            self.answer(&q, &choice, sender).await;
            return Ok(());
        }
        let Some(verdict) = super::routing::verdict_of(key) else {
            return Ok(()); // 👍 and friends mean nothing here
        };
        let action = match verdict {
            Verdict::Approve => "approve",
            Verdict::Deny => "deny",
        };
        let Some(a) = self.store().approval_by_request_event(target)? else {
            self.report(
                sender,
                action,
                None,
                &format!(
                    "reacted {key} to {target}, which is not an approval request; nothing done"
                ),
            )
            .await;
            return Ok(());
        };
        if let Some(why) = self.not_an_approver(sender).await? {
            let who = if self.cfg().agent_of(sender).map(|n| n.to_string())
                == Some(a.requester.clone())
            {
                format!("{why}, the requester itself")
            } else {
                why
            };
            self.report(
                sender,
                action,
                Some(&a),
                &format!("reacted {key} to request #{}: ignored, {who}", a.id),
            )
            .await;
            return Ok(());
        }
        match self.store().vote(
            a.id,
            reaction,
            sender.as_str(),
            verdict,
            self.cfg().approvals_required,
        )? {
            VoteOutcome::Approved => {
                // Said without holding up the apply (the loop starts it right after this).
                let (c, a, text) = (
                    self.clone(),
                    a.clone(),
                    format!("✓ Approved by {sender}; applying."),
                );
                tokio::spawn(async move { c.thread(&a, &text).await });
            }
            VoteOutcome::Counted {
                approvals,
                required,
            } => {
                self.thread(
                    &a,
                    &format!("✓ from {sender} counted: {approvals} of {required} approvals."),
                )
                .await;
            }
            VoteOutcome::Denied => {
                self.react(&a, "❌").await;
                self.thread(&a, &format!("❌ Denied by {sender}. Nothing was applied."))
                    .await;
            }
            VoteOutcome::Closed(state) => {
                self.report(
                    sender,
                    action,
                    Some(&a),
                    &format!(
                        "reacted {key} to request #{} after it was {state}: ignored",
                        a.id
                    ),
                )
                .await;
            }
            VoteOutcome::Expired => {
                self.thread(
                    &a,
                    &format!("⌛ Request #{} had expired: nothing done.", a.id),
                )
                .await;
            }
            VoteOutcome::Duplicate | VoteOutcome::AlreadyVoted => {}
        }
        Ok(())
    }

    async fn handle_redaction(&self, sender: &UserId, redacts: &str) -> anyhow::Result<()> {
        if let Some(a) = self.store().approval_by_request_event(redacts)? {
            if let Some(why) = self.not_an_approver(sender).await? {
                self.report(
                    sender,
                    "cancel",
                    Some(&a),
                    &format!("redacted request #{}: ignored, {why}", a.id),
                )
                .await;
                return Ok(());
            }
            if self
                .store()
                .cancel_approval(a.id, sender.as_str(), "request redacted")?
            {
                self.notice(
                    None,
                    &format!("🗑️ Request #{} cancelled: {sender} redacted it.", a.id),
                )
                .await;
            }
            return Ok(());
        }
        if let Some((a, reverted)) =
            self.store()
                .withdraw_vote(redacts, sender.as_str(), self.cfg().approvals_required)?
            && reverted
        {
            self.thread(
                &a,
                &format!("↩️ {sender} withdrew a ✓: waiting for approvals again."),
            )
            .await;
        }
        Ok(())
    }

    /// A refused attempt: audited, and said in `#hive-c0re`.
    async fn report(&self, actor: &UserId, action: &str, a: Option<&Approval>, what: &str) {
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

    /// Posts the request message and records its event id. The text is rendered from the
    /// snapshot (`request::render`: agent text as text, every file's stat, agent.toml first,
    /// bounded); a request whose changes cannot be shown is not posted (the error fails it).
    async fn post_request(&self, a: &Approval) -> anyhow::Result<()> {
        let room = self
            .room(&super::rooms::RoomKey::Approvals)
            .context("no approvals room")?;
        let name = AgentName::parse(&a.agent)?;
        let repo = ConfigRepo::new(self.data_dir(), &name);
        let changes = match tokio::task::block_in_place(|| repo.changes(&a.sha)) {
            Ok(c) => c,
            Err(e) => {
                // Never a request without what it changes: it fails, said where it shows.
                self.refuse_posting(a, &e.context("its changes cannot be shown"))
                    .await?;
                return Ok(());
            }
        };
        let rendered = super::request::render(&super::request::RequestView {
            id: a.id,
            spawn: a.kind == "init_config",
            requester: &a.requester,
            agent: &a.agent,
            summary: &a.summary,
            sha: &a.sha,
            required: a.required.max(self.cfg().approvals_required),
            expires_us: a.expires_us,
            changes: &changes,
        });
        // Rendered already, as text: never through the Markdown renderer.
        let content = json!({
            "msgtype": "m.text",
            "body": rendered.body,
            "format": "org.matrix.custom.html",
            "formatted_body": rendered.html,
        });
        // What the operator approves must be what is applied: a request the secret filter would
        // have to redact is not shown redacted, it is not posted at all.
        if let Some(label) = self.secrets().find_in_content(&content) {
            let e = anyhow::anyhow!(
                "it shows {label}; a config must not carry a secret (`hive approvals --diff {}` shows it to you)",
                a.id
            );
            self.refuse_posting(a, &e).await?;
            return Ok(());
        }
        let txn = format!("hh-approval-{}", a.id);
        let ev = self.send_raw(&room, None, &txn, &content).await?;
        self.store().set_request_event(a.id, ev.as_str())?;
        Ok(())
    }

    /// A message in the request's thread.
    async fn thread(&self, a: &Approval, text: &str) {
        if !self
            .in_approvals_thread(a.request_event.as_deref(), text)
            .await
        {
            self.notice(None, text).await;
        }
    }

    /// Posts `text` as a notice in the thread of event `root` in `#hive-approvals` (a request
    /// or a question). False if there is no such thread to post in yet.
    async fn in_approvals_thread(&self, root: Option<&str>, text: &str) -> bool {
        let (Some(room), Some(root)) = (self.room(&super::rooms::RoomKey::Approvals), root) else {
            return false;
        };
        let mut content = super::outbound::message_content(text, None, None, true);
        content["m.relates_to"] = json!({
            "rel_type": "m.thread",
            "event_id": root,
            "is_falling_back": true,
            "m.in_reply_to": { "event_id": root },
        });
        let txn = format!("hh-thread-{}", super::registration::random_secret(16));
        if let Err(e) = self.send_raw(&room, None, &txn, &content).await {
            tracing::warn!(error = %format!("{e:#}"), "could not post in an approvals thread");
        }
        true
    }

    /// The core's own reaction on a request (⏳ ✅ ❌), showing its state at a glance.
    async fn react(&self, a: &Approval, key: &str) {
        let (Some(room), Some(req)) = (
            self.room(&super::rooms::RoomKey::Approvals),
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

    /// Applies an approval now in `applying`: renders and switches the new generation, moves
    /// `applied`, restarts the agent after its in-flight turn. A failure leaves the previous
    /// generation running and says why.
    async fn apply(&self, a: Approval) {
        self.react(&a, "⏳").await;
        // A spawn's identity first: it must be a new account (nothing is applied otherwise).
        let fresh = match (a.kind.as_str(), AgentName::parse(&a.agent)) {
            ("init_config", Ok(name)) if self.agent(&name).is_none() => {
                self.register_new_agent(&name).await
            }
            _ => Ok(()),
        };
        let result = match fresh {
            Ok(()) => tokio::task::block_in_place(|| self.apply_config(&a)),
            Err(e) => Err(e),
        };
        match result {
            Ok(deploy) if a.kind == "init_config" => {
                self.record_apply(&a, Ok(deploy));
                let name = AgentName::parse(&a.agent).expect("validated at request time");
                match self.bring_up(&name).await {
                    Ok(()) => {
                        self.react(&a, "✅").await;
                        self.thread(&a, &format!("✅ Spawned **{name}** (deploy/{deploy}): its room is #agent-{name}.")).await;
                        self.notice(
                            None,
                            &format!("🐣 **{name}** joined the hive (request #{}).", a.id),
                        )
                        .await;
                    }
                    Err(e) => {
                        let reason = format!("{e:#}");
                        self.react(&a, "❌").await;
                        self.thread(&a, &format!("⚠️ **{name}**'s config is applied but it could not be started: {reason}. It starts with the next start of hive-c0re.")).await;
                    }
                }
            }
            Ok(deploy) => {
                self.record_apply(&a, Ok(deploy));
                if let Ok(name) = AgentName::parse(&a.agent)
                    && let Err(e) = self.refresh_agent(&name).await
                {
                    self.thread(
                        &a,
                        &format!("⚠️ Applied, but its profile and rooms could not be updated yet: {e:#}. They are repaired at the next start of hive-c0re."),
                    )
                    .await;
                }
                self.react(&a, "✅").await;
                self.thread(
                    &a,
                    &format!(
                        "✅ Applied `{}` to **{}** as deploy/{deploy}; it restarts after its current turn.",
                        a.sha, a.agent
                    ),
                )
                .await;
            }
            Err(e) => {
                let reason = format!("{e:#}");
                self.record_apply(&a, Err(&reason));
                self.react(&a, "❌").await;
                self.thread(
                    &a,
                    &format!(
                        "❌ Applying failed: {reason}. **{}** keeps its previous config.",
                        a.agent
                    ),
                )
                .await;
            }
        }
    }

    /// `applying` → `applied`/`failed` in the store. The config is already switched (or not):
    /// a store that cannot record it is said loudly; at the next start `recover_applying`
    /// finishes the record from git, which is the commit point.
    fn record_apply(&self, a: &Approval, result: Result<i64, &str>) {
        if let Err(e) = self.store().finish_apply(a.id, result) {
            tracing::error!(id = a.id, error = %format!("{e:#}"), "could not record the end of an apply; it is finished at the next start");
        }
    }

    fn apply_config(&self, a: &Approval) -> anyhow::Result<i64> {
        let name = AgentName::parse(&a.agent)?;
        let entry = self.agent(&name);
        match (a.kind.as_str(), &entry) {
            ("init_config", Some(_)) => anyhow::bail!("{name} already exists"),
            ("apply_commit", None) => anyhow::bail!("{name} is not an agent of this hive"),
            // Checked again with the hive's config as it is now.
            ("init_config", None) => spawnable(self.cfg(), &name).map_err(anyhow::Error::msg)?,
            _ => {}
        }
        let repo = ConfigRepo::new(self.data_dir(), &name);
        let files = repo.read_commit(&a.sha).map_err(|e| anyhow::anyhow!(e))?;
        let spec = repo.parse_spec(&files).map_err(|e| anyhow::anyhow!(e))?;
        // The hive's config as it is now decides what an approved config may use.
        grantable(self.cfg(), &spec).map_err(anyhow::Error::msg)?;
        for r in &spec.allowed_recipients {
            anyhow::ensure!(
                self.agent(r).is_some(),
                "allowed_recipients: {r} is not an agent of this hive"
            );
        }
        let n = repo.current().map_or(0, |(n, _)| n) + 1;
        crate::failpoint::exit_at("apply-before-commit");
        repo.deploy(&a.sha, n, &files)?;
        crate::failpoint::exit_at("apply-after-commit");
        let running = repo.load_current().map_err(|e| {
            anyhow::anyhow!(
                "{}",
                e.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
        match entry {
            Some(entry) => {
                entry.set_spec(running);
                entry.restart.notify_one();
            }
            None => {
                self.add_agent(running);
            }
        }
        Ok(n as i64)
    }

    /// At start: an approval found `applying` was interrupted. If its commit point was reached
    /// (`applied` moved), finish it; otherwise nothing changed: mark it failed. Never run twice.
    async fn recover_applying(&self) -> anyhow::Result<()> {
        for a in self.store().approvals_in(ApprovalState::Applying)? {
            let name = AgentName::parse(&a.agent)?;
            let repo = ConfigRepo::new(self.data_dir(), &name);
            if repo.applied()?.as_deref() == Some(a.sha.as_str()) {
                let finished = tokio::task::block_in_place(|| -> anyhow::Result<i64> {
                    let n = match repo.current() {
                        Some((n, sha)) if sha == a.sha => n,
                        other => {
                            let n = other.map_or(0, |(n, _)| n) + 1;
                            let files = repo.read_commit(&a.sha).map_err(|e| anyhow::anyhow!(e))?;
                            repo.deploy(&a.sha, n, &files)?;
                            n
                        }
                    };
                    if let (Some(entry), Ok(spec)) = (self.agent(&name), repo.load_current()) {
                        entry.set_spec(spec);
                    }
                    Ok(n as i64)
                });
                match finished {
                    Ok(n) => {
                        self.store().finish_apply(a.id, Ok(n))?;
                        self.react(&a, "✅").await;
                        self.thread(
                            &a,
                            &format!(
                                "✅ Applied as deploy/{n} (finished after hive-c0re restarted)."
                            ),
                        )
                        .await;
                    }
                    Err(e) => {
                        let reason = format!("interrupted and could not be finished: {e:#}");
                        self.store().finish_apply(a.id, Err(&reason))?;
                        self.react(&a, "❌").await;
                        self.thread(&a, &format!("❌ {reason}")).await;
                    }
                }
            } else {
                let reason = "hive-c0re stopped before the apply took effect; nothing was changed";
                self.store().finish_apply(a.id, Err(reason))?;
                self.react(&a, "❌").await;
                self.thread(&a, &format!("❌ {reason}. Request it again to retry."))
                    .await;
            }
        }
        Ok(())
    }
}

/// Files an apply-commit request in the database, after snapshotting and validating the commit.
/// The outer error is an internal failure; the inner one a refusal with its reason. Used by the
/// core (requests from agents) and by `hive config propose` (requests from humans).
pub fn file_apply_commit(
    data_dir: &std::path::Path,
    cfg: &crate::config::Config,
    requester: &str,
    agent: &str,
    sha: &str,
    summary: &str,
) -> anyhow::Result<Result<i64, String>> {
    file_request(
        data_dir,
        cfg,
        "apply_commit",
        requester,
        agent,
        sha,
        summary,
    )
}

/// Seeds a new agent's proposed config from the built-in template and files an `init_config`
/// request for it. Used by the core for a manager's `request_init_config`.
pub fn file_init_config(
    data_dir: &std::path::Path,
    cfg: &crate::config::Config,
    requester: &str,
    name: &str,
    summary: &str,
) -> anyhow::Result<Result<i64, String>> {
    let name = match AgentName::parse(name) {
        Ok(n) => n,
        Err(e) => return Ok(Err(e.to_string())),
    };
    if let Err(e) = check_summary(summary).and_then(|()| spawnable(cfg, &name)) {
        return Ok(Err(e));
    }
    let repo = ConfigRepo::new(data_dir, &name);
    if repo.exists() {
        return Ok(Err(format!("{name} is already an agent of this hive")));
    }
    let sha = repo.commit_proposed(
        &crate::configrepo::template(&name, requester, summary),
        &format!("init {name} from the template: {summary}"),
    )?;
    file_request(
        data_dir,
        cfg,
        "init_config",
        requester,
        name.as_str(),
        &sha,
        summary,
    )
}

#[allow(clippy::too_many_arguments)]
fn file_request(
    data_dir: &std::path::Path,
    cfg: &crate::config::Config,
    kind: &str,
    requester: &str,
    agent: &str,
    sha: &str,
    summary: &str,
) -> anyhow::Result<Result<i64, String>> {
    let name = match AgentName::parse(agent) {
        Ok(n) => n,
        Err(e) => return Ok(Err(e.to_string())),
    };
    if let Err(e) = check_summary(summary) {
        return Ok(Err(e));
    }
    let sha = match parse_sha(sha) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let repo = ConfigRepo::new(data_dir, &name);
    if kind == "apply_commit" && !repo.exists() {
        return Ok(Err(format!("{name} is not an agent of this hive")));
    }
    let store = crate::store::Store::open(&data_dir.join("c0re.db"))?;
    let id = store.create_approval(&NewApproval {
        kind,
        agent: name.as_str(),
        sha: &sha,
        requester,
        summary,
        required: cfg.approvals_required,
        ttl_us: (cfg.approval_ttl_secs as i64).saturating_mul(1_000_000),
    })?;
    let checked = (|| -> Result<(), String> {
        repo.snapshot(&sha, &id.to_string())
            .map_err(|e| format!("{e:#}"))?;
        let files = repo.read_commit(&sha)?;
        let spec = repo
            .parse_spec(&files)
            .map_err(|e| format!("its agent.toml does not validate: {e}"))?;
        grantable(cfg, &spec)?;
        if repo.applied().ok().flatten().as_deref() == Some(sha.as_str()) {
            return Err(format!("{sha} is already applied"));
        }
        if !repo.is_fast_forward(&sha).map_err(|e| format!("{e:#}"))? {
            return Err(format!(
                "{sha} does not fast-forward the applied config; base the change on {}",
                repo.applied().ok().flatten().unwrap_or_default()
            ));
        }
        Ok(())
    })();
    match checked {
        Ok(()) => {
            // Only now can the request be posted: its snapshot and its config exist.
            store.complete_approval(id)?;
            Ok(Ok(id))
        }
        Err(reason) => {
            store.cancel_approval(id, "hive-c0re", &format!("refused: {reason}"))?;
            Ok(Err(reason))
        }
    }
}

/// What an agent's config may not grant itself, checked against the hive's config (the
/// operator's): a model provider hive.toml does not declare, of another kind, or a model it
/// does not allow. (An agent with no provider at all is not refused: it says it cannot think.)
fn grantable(
    cfg: &crate::config::Config,
    spec: &crate::agent_spec::AgentSpec,
) -> Result<(), String> {
    match cfg.provider_for(&spec.brain) {
        Ok(_) => Ok(()),
        Err(e) if e.is_warning() => Ok(()),
        Err(e) => Err(format!(
            "its agent.toml asks for what hive.toml does not grant: {e}"
        )),
    }
}

/// A request's summary: one short text, shown to the operators as written.
fn check_summary(summary: &str) -> Result<(), String> {
    if summary.len() > MAX_SUMMARY {
        return Err(format!(
            "the summary is {} bytes; at most {MAX_SUMMARY} (the config itself carries the rest)",
            summary.len()
        ));
    }
    Ok(())
}

/// Whether `name` may be spawned: never a manager's name (a spawned agent would get the
/// manager's powers from hive.toml), nor an identity of the hive's own (the appservice's user,
/// an operator's localpart on this server).
pub fn spawnable(cfg: &crate::config::Config, name: &AgentName) -> Result<(), String> {
    if cfg.managers.contains(name) {
        return Err(format!(
            "{name} is listed in approvals.managers: a manager cannot be spawned by a request"
        ));
    }
    let user = cfg.agent_user_id(name);
    if user == cfg.bot_user_id() {
        return Err(format!("{user} is the appservice's own user"));
    }
    if cfg.operators.contains(&user)
        || cfg
            .operators
            .iter()
            .any(|o| o.server_name() == cfg.server_name && o.localpart() == name.as_str())
    {
        return Err(format!("{name} is an operator's name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_be_spawned() {
        let cfg = crate::config::Config::validate(
            toml::from_str(
                "[operators]\nusers = [\"@alice:localhost\", \"@bob:elsewhere\"]\n[approvals]\nmanagers = [\"hm1nd\"]\n",
            )
            .unwrap(),
            None,
        )
        .unwrap();
        let cases = [
            ("newbie", true),
            ("hm1nd", false), // a manager
            ("alice", false), // an operator's localpart here
            ("bob", true),    // an operator elsewhere: @bob:localhost is not them
        ];
        for (name, ok) in cases {
            let n = AgentName::parse(name).unwrap();
            assert_eq!(spawnable(&cfg, &n).is_ok(), ok, "{name}");
        }
        // The appservice's own user, when agents share its namespace.
        let cfg = crate::config::Config::validate(
            toml::from_str("[appservice]\nsender_localpart = \"bot\"\n").unwrap(),
            None,
        )
        .unwrap();
        assert!(spawnable(&cfg, &AgentName::parse("bot").unwrap()).is_err());
    }

    #[test]
    fn summaries_are_bounded() {
        assert!(check_summary("short").is_ok());
        assert!(check_summary(&"x".repeat(MAX_SUMMARY)).is_ok());
        assert!(check_summary(&"x".repeat(MAX_SUMMARY + 1)).is_err());
    }

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
