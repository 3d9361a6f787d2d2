//! Agents' questions for the operators (`ask_operator`): filed in the store, posted in
//! `#hive-approvals` with a keycap per option, answered by an approver's keycap or thread reply
//! (`decide`), or expired; the agent hears either as an `operator_answer` message.

use std::time::Duration;

use anyhow::Context;
use ruma::UserId;
use serde_json::json;

use super::filing::{Refusal, check_question};
use crate::agent_spec::AgentName;
use crate::c0re::rooms::RoomKey;
use crate::c0re::{Core, outbound};
use crate::matrix::client::is_permanent;
use crate::store::Question;

/// Why a question was not asked: refused (its text is the agent's answer), or not recorded.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("{0:#}")]
    Store(anyhow::Error),
}

impl Core {
    /// An agent's question for the operators: posted in `#hive-approvals`; the answer (an
    /// option's keycap reaction or a reply in the thread), or the timeout, comes back to the
    /// agent as an `operator_answer` message. The error's text is what the agent reads (the
    /// socket's and the tool's answer): a [`Refusal`], or the store's failure.
    pub fn ask_operator(
        &self,
        agent: &AgentName,
        question: &str,
        options: &[String],
        ttl_secs: Option<u64>,
    ) -> Result<i64, AskError> {
        check_question(question, options)?;
        self.agents()
            .rate(agent, crate::c0re::limits::Kind::Question)
            .map_err(Refusal::from)?;
        let ttl = ttl_secs.unwrap_or(3600).clamp(1, 7 * 86_400);
        let id = self
            .store()
            .create_question(
                agent.as_str(),
                question.trim(),
                options,
                (ttl as i64).saturating_mul(1_000_000),
            )
            .map_err(AskError::Store)?;
        self.wake_approvals();
        Ok(id)
    }

    /// Posts every question filed and not yet shown. One the homeserver refuses for good ends
    /// for its agent as not asked; any other failure stops here and asks to come back soon.
    pub(super) async fn post_questions(&self) -> anyhow::Result<Option<Duration>> {
        for q in self.store().unposted_questions()? {
            if let Err(e) = self.post_question(&q).await {
                if is_permanent(&e) {
                    self.refuse_question(&q, &e).await?;
                } else {
                    tracing::warn!(id = q.id, error = %format!("{e:#}"), "could not post a question yet");
                    return Ok(Some(Duration::from_secs(5)));
                }
            }
        }
        Ok(None)
    }

    /// Expires every question past its time: its agent is told, its thread says so.
    pub(super) async fn expire_questions(&self) -> anyhow::Result<()> {
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
        Ok(())
    }

    async fn post_question(&self, q: &Question) -> anyhow::Result<()> {
        let room = self
            .rooms()
            .get(&RoomKey::Approvals)
            .context("no approvals room")?;
        let text = super::text::question(q);
        let mut content = outbound::message_content(&text, None, None, false);
        // The operators are notified (`mentions.rs`).
        crate::c0re::mentions::mention_operators(&mut content, &self.cfg().operators);
        let ev = self
            .send_raw(&room, None, &format!("hh-question-{}", q.id), &content)
            .await?;
        self.store().set_question_event(q.id, ev.as_str())?;
        Ok(())
    }

    pub(super) async fn answer(&self, q: &Question, answer: &str, by: &UserId) {
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

    /// A question the homeserver refused to show: it ends for its agent as "not asked".
    async fn refuse_question(&self, q: &Question, e: &anyhow::Error) -> anyhow::Result<()> {
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
            .close_question(q.id, crate::store::QuestionState::Expired, tell.as_ref())?;
        self.wake_outbox();
        Ok(())
    }
}
