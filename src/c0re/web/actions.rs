//! The console's forms: every `POST /act/<verb>/<target>` (docs/console.md, "What each button
//! does, as the operator"). Each action is done as the operator's own Matrix account, so the
//! core learns of it the way it learns of anything the operator does in a Matrix client:
//! the ✅ is the operator's reaction, the command is the operator's `!hive` command.
//!
//! One request: the fields are read ([`plan::Fields`]), the path parsed ([`plan::parse`]),
//! the account found ([`operator::identity`]), a double click dropped
//! ([`plan::first_in_window`]), the facts gathered (the request or question row, the rooms),
//! the plan decided ([`plan::plan`]); then it is sent, and a `!hive` command waits up to
//! [`REPLY_WAIT`] for the core's reply ([`replies`]), which says whether the command did what
//! it asked ([`replies::Reply`], typed by the command itself: [`answered`]). Every action is
//! audited (`web <verb>`, actor the operator), refusals too, and the console's audit pane is
//! told. The answer is always `200` with an [`Outcome`]; only the guard in front
//! (`web/serve.rs`: the session and the CSRF token) answers `4xx`. Nothing here checks the
//! session: [`routes`] is mounted only behind that guard.
//!
//! - [`operator`]: the operator's account: where it comes from, its login and token.
//! - [`plan`]: pure: what a form asks for and what is sent for it.
//! - [`replies`]: the hook on the `!hive` reply path a command's action waits on.

pub mod operator;
pub mod plan;
pub mod replies;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use ruma::events::MessageLikeEventType;
use serde_json::json;

use super::Outcome;
use crate::c0re::Core;
use crate::c0re::approvals::kept::KeptKind;
use crate::c0re::rooms::RoomKey;
use crate::store::Audit;
use operator::OperatorAccount;
use plan::{Act, Answer, Facts, Plan, Refused};

/// How long a command's action waits for the core's reply before it answers "sent".
pub const REPLY_WAIT: Duration = Duration::from_secs(10);

/// The actions' state: the core, the operator's account, the acts of the last moments.
pub struct Actions {
    core: Core,
    operator: OperatorAccount,
    recent: Mutex<VecDeque<(Act, Instant)>>,
}

/// Every `POST /act/{verb}/{target}` (state applied: a `Router<()>`). It checks no session
/// and no CSRF token: mount it only behind `web::serve`'s guard (public for the integration
/// tests, which drive it without one).
pub fn routes(core: Core) -> Router {
    let actions = Arc::new(Actions::new(core));
    Router::new()
        .route("/act/{verb}/{target}", post(act))
        .with_state(actions)
}

async fn act(
    State(actions): State<Arc<Actions>>,
    Path((verb, target)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Json<Outcome> {
    Json(actions.act(&verb, &target, &body).await)
}

/// What one action did, before it is audited and answered.
#[derive(Debug, PartialEq, Eq)]
struct Done {
    ok: bool,
    message: String,
    /// The audit's outcome word.
    audit: &'static str,
}

impl Done {
    fn ok(message: String) -> Self {
        Self {
            ok: true,
            message,
            audit: "sent",
        }
    }

    fn refused(message: String) -> Self {
        Self {
            ok: false,
            message,
            audit: "refused",
        }
    }

    fn failed(message: String) -> Self {
        Self {
            ok: false,
            message,
            audit: "failed",
        }
    }
}

impl Actions {
    pub fn new(core: Core) -> Self {
        let operator = OperatorAccount::new(
            &core.cfg().homeserver_url,
            core.data_dir(),
            &core.cfg().operators,
        );
        Self {
            core,
            operator,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// Carries out one form's post (module doc); never fails: the outcome says what happened.
    pub async fn act(&self, verb: &str, target: &str, body: &[u8]) -> Outcome {
        let fields = plan::Fields::from_urlencoded(body);
        // Who acts: the operator's account as the files name it (no network yet).
        let actor = match self.operator.identity() {
            Ok(id) => id.user().to_string(),
            Err(e) => {
                let done = Done::refused(e.to_string());
                return self.answer("web console", verb, target, None, done);
            }
        };
        let act = match plan::parse(verb, target, &fields) {
            Ok(a) => a,
            Err(r) => return self.answer(&actor, verb, target, None, Done::refused(r.to_string())),
        };
        let fresh = {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            plan::first_in_window(&mut recent, &act, Instant::now())
        };
        if !fresh {
            let done = Done::refused(Refused::Twice(act.verb()).to_string());
            return self.answer(&actor, verb, target, approval_id(&act), done);
        }
        let done = self.carry_out(&act, &actor).await;
        if !done.ok {
            // A refused or failed act may be tried again at once.
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent.retain(|(a, _)| a != &act);
        }
        self.answer(&actor, act.verb(), target, approval_id(&act), done)
    }

    /// Audits `done` and turns it into the answer, through the secret filter.
    fn answer(
        &self,
        actor: &str,
        verb: &str,
        target: &str,
        approval: Option<i64>,
        done: Done,
    ) -> Outcome {
        let message = self.core.shown(&done.message);
        let action = self.core.shown(&format!("web {}", replies::cut(verb, 40)));
        let target = self.core.shown(replies::cut(target, 80));
        let agent = (approval.is_none()).then_some(target.as_str());
        if let Err(e) = self.core.store().audit(&Audit {
            actor,
            action: &action,
            approval_id: approval,
            agent,
            sha: None,
            outcome: done.audit,
            detail: Some(&message),
        }) {
            tracing::error!(action, error = %format!("{e:#}"), "could not audit a console action");
        }
        // The audit pane shows this row live.
        self.core.console().changed();
        Outcome {
            ok: done.ok,
            message,
        }
    }

    async fn carry_out(&self, act: &Act, actor: &str) -> Done {
        let plan = match self.plan(act).await {
            Ok(Ok(p)) => p,
            Ok(Err(r)) => return Done::refused(r.to_string()),
            Err(e) => return Done::failed(format!("cannot look up what to {}: {e:#}", act.verb())),
        };
        if let Some(label) = match &plan {
            Plan::Reply { body, .. } | Plan::Message { body, .. } => self.core.secrets().find(body),
            Plan::FileDestroy { summary, .. } => self.core.secrets().find(summary),
            Plan::React { .. } => None,
        } {
            return Done::refused(format!("the text shows {label}: not sent"));
        }
        let txn = format!("hh-web-{}-{}", act.verb(), crate::proc::random_secret(16));
        match plan {
            Plan::React { room, event, key } => {
                let content = json!({"m.relates_to": {
                    "rel_type": "m.annotation", "event_id": event, "key": key,
                }});
                match self
                    .operator
                    .send(&room, MessageLikeEventType::Reaction, &content, &txn)
                    .await
                {
                    Ok(_) => Done::ok(sent_text(act, &key)),
                    // The operator reacted the same from another client already: it counts.
                    Err(operator::OperatorError::Matrix(m))
                        if m.errcode() == Some("M_DUPLICATE_ANNOTATION") =>
                    {
                        Done::refused(format!("you reacted {key} to it already"))
                    }
                    Err(e) => Done::failed(e.to_string()),
                }
            }
            Plan::Reply { room, root, body } => {
                let content = json!({
                    "msgtype": "m.text",
                    "body": body,
                    "m.relates_to": {"rel_type": "m.thread", "event_id": root,
                        "is_falling_back": true, "m.in_reply_to": {"event_id": root}},
                });
                match self
                    .operator
                    .send(&room, MessageLikeEventType::RoomMessage, &content, &txn)
                    .await
                {
                    Ok(_) => Done::ok(sent_text(act, "")),
                    Err(e) => Done::failed(e.to_string()),
                }
            }
            Plan::Message {
                room,
                body,
                command,
            } => {
                let content = json!({"msgtype": "m.text", "body": body});
                let sent = self
                    .operator
                    .send(&room, MessageLikeEventType::RoomMessage, &content, &txn)
                    .await;
                match (sent, command) {
                    (Err(e), _) => Done::failed(e.to_string()),
                    (Ok(_), false) => Done::ok(sent_text(act, "")),
                    (Ok(event), true) => self.command_reply(event.as_str(), &body).await,
                }
            }
            Plan::FileDestroy { agent, summary } => {
                let requester = format!("{actor} (web console)");
                match self
                    .core
                    .request_kept(&requester, KeptKind::Destroy, agent.as_str(), &summary)
                    .await
                {
                    Ok(id) => Done::ok(format!(
                        "asked to destroy {agent}: request #{id}, waiting on you in approvals"
                    )),
                    Err(e) => Done::refused(format!("cannot destroy {agent}: {e}")),
                }
            }
        }
    }

    /// The core's reply to the command `body` (sent as `event`), or "sent" after
    /// [`REPLY_WAIT`].
    async fn command_reply(&self, event: &str, body: &str) -> Done {
        let replies = self.core.control().replies();
        let rx = replies.wait(event);
        match tokio::time::timeout(REPLY_WAIT, rx).await {
            Ok(Ok(reply)) => answered(reply),
            Ok(Err(_)) | Err(_) => {
                replies.forget(event);
                Done::ok(format!(
                    "sent `{body}`; the core has not answered within {} s (its answer shows in #hive-c0re)",
                    REPLY_WAIT.as_secs()
                ))
            }
        }
    }

    /// Gathers the facts `act` is decided on (sqlite: on a blocking thread) and decides.
    async fn plan(&self, act: &Act) -> anyhow::Result<Result<Plan, Refused>> {
        let core = self.core.clone();
        let act = act.clone();
        tokio::task::spawn_blocking(move || {
            let rooms = core.rooms();
            let (approval, question) = match &act {
                Act::Vote { id, .. } | Act::Purge { id } => (core.store().approval(*id)?, None),
                Act::Answer { id, .. } => (
                    None,
                    core.store()
                        .open_questions()?
                        .into_iter()
                        .find(|q| q.id == *id),
                ),
                _ => (None, None),
            };
            let agent = match &act {
                Act::Say { agent, .. } | Act::Turn { agent, .. } => Some(agent),
                _ => None,
            };
            let facts = Facts {
                approval: approval.as_ref(),
                question: question.as_ref(),
                approvals_room: rooms.get(&RoomKey::Approvals),
                control_room: rooms.get(&RoomKey::Control),
                inbox: agent.and_then(|a| rooms.get(&RoomKey::Inbox(a.clone()))),
                agent_known: agent.is_some_and(|a| core.agents().get(a).is_some()),
            };
            Ok(plan::plan(&act, &facts))
        })
        .await?
    }
}

/// What a command's action did, from the core's reply: done (a green toast, audited `sent`)
/// when the command says it did what it asked, else `answered` with the core's reason.
fn answered(reply: replies::Reply) -> Done {
    if reply.done {
        Done::ok(reply.text)
    } else {
        Done {
            ok: false,
            message: reply.text,
            audit: "answered",
        }
    }
}

/// The request an act is about, for the audit's `approval_id`.
fn approval_id(act: &Act) -> Option<i64> {
    match act {
        Act::Vote { id, .. } | Act::Purge { id } => Some(*id),
        _ => None,
    }
}

/// What the toast says once `act` was sent (`key`: the reaction's, if it was one).
fn sent_text(act: &Act, key: &str) -> String {
    match act {
        Act::Vote { id, .. } => format!("{key} on request #{id}, as the operator"),
        Act::Purge { id } => format!("confirmed the purge (request #{id})"),
        Act::Answer {
            id,
            answer: Answer::Option(n),
        } => format!("answered question #{id}: option {n}"),
        Act::Answer { id, .. } => format!("answered question #{id}"),
        Act::Say { agent, .. } => format!("sent to {agent}"),
        Act::Turn { turn, agent } => format!("sent {} to {agent}", turn.line()),
        Act::Command { command, agent } => format!("sent !hive {} {agent}", command.as_str()),
        Act::Destroy { agent, .. } => format!("asked to destroy {agent}"),
    }
}

#[cfg(test)]
mod tests;
