//! The forge tools (docs/brains.md, "Forge tools"): `forge_get_pr`, `forge_get_issue`,
//! `forge_comment`, `forge_label`, `forge_request_review`, `forge_review` and
//! `forge_discuss`, run by the core with the token it holds (an agent never sees it).
//!
//! Every call, in this order (each refusal audited and told, the forge not called):
//! 1. its arguments read into a typed call ([`parse_call`]: the repository a [`RepoName`],
//!    bodies, labels, reviewers and line comments bounded);
//! 2. [`may_call`]: the agent's `[[forge.grant]]` names the tool for that repository, and
//!    the hive follows the repository (a forge tool that is not offered to an agent is
//!    refused by this same check);
//! 3. a write (and `forge_discuss`) through the secret filter, whole: one holding a known
//!    secret is refused and the operator told in `#hive-c0re`;
//! 4. a write counted against `[limits] forge_writes_per_hour` (`forge_discuss` against the
//!    messages' rate);
//! 5. the forge called (a review only at the head the agent read, [`same_head`]; a comment's
//!    or review's body [`marked`], looked for first in a re-run attempt); a write then said in
//!    the item's thread as the agent
//!    ([`thread_line`]; a thread that cannot be posted to is said in the answer, the write
//!    stands).
//!
//! Answers and errors pass [`Core::shown`]; the audit records `ok`, `refused` or `failed`
//! with the item (`acme/widgets#5`). A formal review's verdict is the core's, from the
//! review's own words ([`review_event`]).

use serde_json::{Value, json};

use crate::agent_spec::AgentName;
use crate::agent_spec::forge::{ForgeGrant, allows};
use crate::c0re::Core;
use crate::c0re::agents::tool_spec::{ToolError, ToolSpec};
use crate::c0re::limits::Kind;
use crate::forge::client::{LineComment, ReviewEvent};
use crate::forge::{ForgeTool, ItemRef, RepoName};

mod call;
pub use call::{Call, parse_call};

/// Largest diff `forge_get_pr` answers (the rest is said truncated).
pub const MAX_DIFF: usize = 200 << 10;
/// Largest item body answered.
pub const MAX_BODY: usize = 20 << 10;
/// Largest comment body answered, each.
pub const MAX_COMMENT: usize = 4 << 10;
/// Largest text an agent may post to the forge or the thread.
pub const MAX_POST: usize = 64 << 10;
/// Most line comments of one review, labels of one call, reviewers of one call.
pub const MAX_LINE_COMMENTS: usize = 50;
pub const MAX_NAMES: usize = 20;
/// Most of a body a thread line quotes.
pub const THREAD_QUOTE: usize = 2000;
/// Most of the item an audit row names, as the agent wrote it.
pub const AUDIT_TARGET: usize = 200;

/// The forge tools; offered only to an agent whose grants name them (`offered_to`).
pub fn catalog() -> Vec<ToolSpec> {
    let repo = json!({ "type": "string", "description": "owner/name, e.g. acme/widgets" });
    let number = json!({ "type": "integer", "minimum": 1, "description": "the pull request's or issue's number" });
    let names = |what: &str| json!({ "type": "array", "minItems": 1, "maxItems": MAX_NAMES, "items": { "type": "string" }, "description": what });
    let item = |extra: Value, required: &[&str]| {
        let mut props = json!({ "repo": repo, "number": number });
        if let (Some(p), Value::Object(e)) = (props.as_object_mut(), extra) {
            p.extend(e);
        }
        let mut req = vec!["repo", "number"];
        req.extend_from_slice(required);
        json!({ "type": "object", "properties": props, "required": req, "additionalProperties": false })
    };
    let body = json!({ "type": "string", "description": "Markdown" });
    vec![
        ToolSpec {
            name: "forge_get_pr",
            description: "Read a pull request: title, body, author, state, head sha, branches, labels, the files it changes and its diff (at most 200 KiB; `diff_truncated` says when cut). Needs a [[forge.grant]] for the repository.",
            input_schema: item(json!({}), &[]),
            managers_only: false,
        },
        ToolSpec {
            name: "forge_get_issue",
            description: "Read an issue (or a pull request as an issue): title, body, author, state, labels, whether it is a pull request, and its last 20 comments.",
            input_schema: item(json!({}), &[]),
            managers_only: false,
        },
        ToolSpec {
            name: "forge_comment",
            description: "Comment on a pull request or issue on the forge (as the hive's forge account); said in the item's thread too.",
            input_schema: item(json!({ "body": body }), &["body"]),
            managers_only: false,
        },
        ToolSpec {
            name: "forge_label",
            description: "Add labels (by name; the repository's existing labels) to a pull request or issue.",
            input_schema: item(json!({ "labels": names("label names") }), &["labels"]),
            managers_only: false,
        },
        ToolSpec {
            name: "forge_request_review",
            description: "Ask forge users (logins) to review a pull request.",
            input_schema: item(
                json!({ "reviewers": names("forge logins") }),
                &["reviewers"],
            ),
            managers_only: false,
        },
        ToolSpec {
            name: "forge_review",
            description: "Post a formal review of a pull request at the head commit you read (`head_sha` as forge_get_pr answered it; refused when the pull request has moved since), with optional line comments on the new version. The verdict follows your words: any 🔴 (in the body or a comment) requests changes; else any 🟡 comments; else any 🟢 approves when the operator allows reviews to approve (`[forge] review_may_approve`), and comments when not; none comments.",
            input_schema: item(
                json!({
                    "body": body,
                    "head_sha": { "type": "string", "description": "the head_sha forge_get_pr answered: the commit you read" },
                    "comments": {
                        "type": "array",
                        "maxItems": MAX_LINE_COMMENTS,
                        "items": {
                            "type": "object",
                            "properties": {
                                "path": { "type": "string", "description": "the file, as in the pull request's files" },
                                "line": { "type": "integer", "minimum": 1, "description": "the line in the new version" },
                                "body": { "type": "string" }
                            },
                            "required": ["path", "line", "body"],
                            "additionalProperties": false
                        }
                    }
                }),
                &["body", "head_sha"],
            ),
            managers_only: false,
        },
        ToolSpec {
            name: "forge_discuss",
            description: "Say something in the pull request's or issue's Matrix thread (in #forge-<owner>-<repo>), as yourself; nothing is posted to the forge.",
            input_schema: item(json!({ "body": body }), &["body"]),
            managers_only: false,
        },
    ]
}

/// Why a forge call is refused before the forge is called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForgeRefusal {
    #[error(
        "{agent} may not call {tool} on {repo}: no [[forge.grant]] in its agent.toml covers it"
    )]
    NotGranted {
        agent: AgentName,
        tool: &'static str,
        repo: RepoName,
    },
    #[error("{repo} is not followed by this hive: no [[forge.servers]] in hive.toml lists it")]
    NotFollowed { repo: RepoName },
}

/// Whether `agent`, holding `grants`, may call `tool` on `repo`, which the hive follows or
/// not. The grant is checked first: an agent without one is told so, whatever the repository.
pub fn may_call(
    agent: &AgentName,
    grants: &[ForgeGrant],
    followed: bool,
    tool: ForgeTool,
    repo: &RepoName,
) -> Result<(), ForgeRefusal> {
    if !allows(grants, tool, repo) {
        return Err(ForgeRefusal::NotGranted {
            agent: agent.clone(),
            tool: tool.name(),
            repo: repo.clone(),
        });
    }
    if !followed {
        return Err(ForgeRefusal::NotFollowed { repo: repo.clone() });
    }
    Ok(())
}

/// Whether a tool of the catalog is offered to an agent holding `grants`: any tool that is
/// not a forge tool; a forge tool when a grant names it (for any repository).
pub fn offered_to(grants: &[ForgeGrant], tool: &str) -> bool {
    match ForgeTool::from_name(tool) {
        Some(t) => grants.iter().any(|g| g.tools.contains(&t)),
        None => true,
    }
}

const RED: char = '🔴';
const YELLOW: char = '🟡';
const GREEN: char = '🟢';

/// A review's verdict from its words: any 🔴 in the body or a line comment requests changes
/// (a bug or a hole: it must not merge); else any 🟡 comments (the author decides); else any
/// 🟢 approves when `may_approve` (`[forge] review_may_approve`, off by default: words a
/// pull request planted in the model must not win an approval), and comments when not; none
/// of them comments.
pub fn review_event(body: &str, comments: &[LineComment], may_approve: bool) -> ReviewEvent {
    let any = |c: char| body.contains(c) || comments.iter().any(|l| l.body.contains(c));
    if any(RED) {
        ReviewEvent::RequestChanges
    } else if any(YELLOW) {
        ReviewEvent::Comment
    } else if any(GREEN) && may_approve {
        ReviewEvent::Approve
    } else {
        ReviewEvent::Comment
    }
}

/// Refuses a review of a head the agent did not read: `read` is the `head_sha` it gives,
/// `current` the pull request's head now. Shas compare without case.
pub fn same_head(item: &ItemRef, read: &str, current: &str) -> Result<(), String> {
    if read.eq_ignore_ascii_case(current) {
        return Ok(());
    }
    Err(format!(
        "{item} moved to {current} since you read {read}: read it again with forge_get_pr"
    ))
}

/// The hidden line a comment's or review's body ends with, naming the call's transaction
/// (the same in every attempt of a turn): a re-run attempt finds its write on the forge by it
/// and does not post it twice.
pub fn marker(txn: &str) -> String {
    use sha1::Digest;
    let d: String = sha1::Sha1::digest(txn.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("<!-- hh:{d} -->")
}

/// `body` with the call's [`marker`].
pub fn marked(body: &str, txn: &str) -> String {
    format!("{body}\n\n{}", marker(txn))
}

/// The first `max` bytes of `s`, at a character boundary, with `…` when cut.
pub fn capped(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// What a successful write says in the item's thread, as the agent.
pub fn thread_line(item: &ItemRef, call: &Call, event: Option<ReviewEvent>) -> Option<String> {
    let quote = |b: &str| capped(b, THREAD_QUOTE);
    Some(match call {
        Call::Comment { body } => format!("💬 commented on {item}: {}", quote(body)),
        Call::Label { labels } => format!("🏷️ labelled {item}: {}", labels.join(", ")),
        Call::RequestReview { reviewers } => {
            format!("👀 asked {} to review {item}", reviewers.join(", "))
        }
        Call::Review { body, comments, .. } => {
            let verb = match event.unwrap_or(ReviewEvent::Comment) {
                ReviewEvent::RequestChanges => format!("🔴 requested changes on {item}"),
                ReviewEvent::Comment => format!("🟡 reviewed {item} (comments only)"),
                ReviewEvent::Approve => format!("🟢 approved {item}"),
            };
            let lines = match comments.len() {
                0 => String::new(),
                n => {
                    let at: Vec<String> = comments
                        .iter()
                        .take(5)
                        .map(|c| format!("{}:{}", c.path, c.line))
                        .collect();
                    let more = if n > 5 { ", …" } else { "" };
                    let s = if n == 1 { "" } else { "s" };
                    format!(" ({n} line comment{s}: {}{more})", at.join(", "))
                }
            };
            format!("{verb}: {}{lines}", quote(body))
        }
        Call::GetPr | Call::GetIssue | Call::Discuss { .. } => return None,
    })
}

/// A call refused (nothing was done) or failed (the forge or the thread said no).
#[derive(Debug)]
enum Failure {
    Refused(String),
    Failed(String),
}

impl Failure {
    fn outcome(&self) -> &'static str {
        match self {
            Failure::Refused(_) => "refused",
            Failure::Failed(_) => "failed",
        }
    }

    fn text(&self) -> &str {
        match self {
            Failure::Refused(s) | Failure::Failed(s) => s,
        }
    }
}

/// What a call answered, and what the audit says of it.
struct Done {
    answer: Value,
    detail: Option<String>,
}

/// The item a call names, as the audit records it, before (or whether or not) it parses.
/// At most [`AUDIT_TARGET`] bytes: the agent wrote it.
pub fn audit_target(v: &Value) -> String {
    let repo = v.get("repo").and_then(Value::as_str).unwrap_or("?");
    let target = match v.get("number") {
        Some(n) => format!("{repo}#{n}"),
        None => repo.to_owned(),
    };
    capped(&target, AUDIT_TARGET)
}

/// What an answer adds when the write was found on the forge, not made again.
const BEFORE: &str =
    "(already on the forge from an earlier attempt of this turn: not posted again)";

/// Where [`Core::written_before`] looks for a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    Comment,
    Review,
}

impl Core {
    /// Whether the write of call `txn` is on the forge already. Asked only in a re-run attempt
    /// of a turn (a crash may have come between the forge's answer and the record of the
    /// effect): its [`marker`] in the item's last comments or reviews.
    async fn written_before(
        &self,
        agent: &AgentName,
        client: &crate::forge::client::ForgeClient,
        item: &ItemRef,
        txn: &str,
        kind: Written,
    ) -> Result<bool, crate::forge::client::ForgeError> {
        if !self.in_rerun(agent) {
            return Ok(false);
        }
        let mark = marker(txn);
        let bodies = match kind {
            Written::Comment => client
                .issue_comments(item)
                .await?
                .into_iter()
                .map(|c| c.body)
                .collect(),
            Written::Review => client.review_bodies(item).await?,
        };
        Ok(bodies.iter().any(|b| b.contains(&mark)))
    }

    /// Whether `agent`'s turn in flight is a re-run (its message's delivery after the first).
    /// A store that cannot say counts as a re-run: the forge is then asked, nothing repeated.
    fn in_rerun(&self, agent: &AgentName) -> bool {
        let Some(entry) = self.agents().get(agent) else {
            return false;
        };
        let turn = entry
            .turn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|t| t.inbox_id);
        let Some(turn) = turn else {
            return false;
        };
        match self.store().turn_attempt(agent.as_str(), turn) {
            Ok(attempt) => attempt.is_some_and(|a| a > 1),
            Err(e) => {
                tracing::warn!(%agent, error = %format!("{e:#}"), "cannot read a turn's attempt; the forge is asked whether a write was made");
                true
            }
        }
    }

    /// Runs forge tool `name` for `agent`; `txn` is the call's transaction id (the thread
    /// post's, derived from it, is the same in a re-run turn). Audited, refused ones too.
    pub(crate) async fn forge_tool(
        &self,
        agent: &AgentName,
        name: &str,
        v: &Value,
        txn: &str,
    ) -> Result<String, ToolError> {
        let Some(tool) = ForgeTool::from_name(name) else {
            return Err(ToolError::NoTool(name.to_owned()));
        };
        let target = audit_target(v);
        match self.forge_call(agent, tool, v, txn).await {
            Ok(mut done) => {
                self.audit_by(
                    agent.as_str(),
                    name,
                    Some(&target),
                    None,
                    "ok",
                    done.detail.as_deref(),
                );
                self.shown_json(&mut done.answer);
                Ok(match done.answer {
                    Value::String(s) => s,
                    other => serde_json::to_string_pretty(&other).expect("json serialises"),
                })
            }
            Err(f) => {
                self.audit_by(
                    agent.as_str(),
                    name,
                    Some(&target),
                    None,
                    f.outcome(),
                    Some(f.text()),
                );
                Err(ToolError::Refused(self.shown(f.text())))
            }
        }
    }

    async fn forge_call(
        &self,
        agent: &AgentName,
        tool: ForgeTool,
        v: &Value,
        txn: &str,
    ) -> Result<Done, Failure> {
        let (item, call) = parse_call(tool, v).map_err(Failure::Refused)?;
        let grants = self
            .agents()
            .get(agent)
            .map(|e| e.spec().forge_grants.clone())
            .unwrap_or_default();
        let followed = self.cfg().forge.server_of(&item.repo).is_some();
        may_call(agent, &grants, followed, tool, &item.repo)
            .map_err(|r| Failure::Refused(r.to_string()))?;
        if tool.writes() || tool == ForgeTool::ForgeDiscuss {
            if let Some(label) = self.secrets().find_in_content(v) {
                tracing::warn!(%agent, tool = tool.name(), what = %label, "refused a forge call holding a secret");
                self.notice(
                    None,
                    &format!("🔒 A {} from **{agent}** on {item} was not sent: it contained {label}. {agent} was told why.", tool.name()),
                )
                .await;
                return Err(Failure::Refused(format!(
                    "not sent: the {} holds {label}; secrets never go to the forge or a room",
                    tool.name()
                )));
            }
            let kind = if tool.writes() {
                Kind::ForgeWrite
            } else {
                Kind::Message
            };
            self.agents()
                .rate(agent, kind)
                .map_err(|r| Failure::Refused(r.to_string()))?;
        }
        if let Call::Discuss { body } = &call {
            let id = self
                .forge_thread_post(&item, Some(agent), body, txn)
                .await
                .map_err(|e| {
                    Failure::Failed(format!("not posted in the thread of {item}: {e:#}"))
                })?;
            return Ok(Done {
                answer: json!(format!("posted in the thread of {item} ({id})")),
                detail: None,
            });
        }
        let client = self
            .forge_client_of(&item.repo)
            .map_err(|e| Failure::Failed(e.to_string()))?;
        let failed = |e: crate::forge::client::ForgeError| Failure::Failed(e.to_string());
        let mut event = None;
        let (said, detail) = match &call {
            Call::GetPr => {
                let pr = client.get_pr(&item).await.map_err(failed)?;
                let files = client.pr_files(&item).await.map_err(failed)?;
                let diff = client.pr_diff(&item, MAX_DIFF).await.map_err(failed)?;
                let files_truncated = files.len() >= crate::forge::client::MAX_FILES;
                return Ok(Done {
                    answer: json!({
                        "repo": item.repo, "number": pr.number, "title": pr.title,
                        "body": capped(&pr.body, MAX_BODY), "author": pr.author,
                        "state": pr.state, "merged": pr.merged, "url": pr.url,
                        "head_sha": pr.head_sha, "base": pr.base, "head": pr.head,
                        "labels": pr.labels, "files": files, "files_truncated": files_truncated,
                        "diff": diff.text, "diff_truncated": diff.truncated,
                    }),
                    detail: None,
                });
            }
            Call::GetIssue => {
                let issue = client.get_issue(&item).await.map_err(failed)?;
                let comments = client.issue_comments(&item).await.map_err(failed)?;
                let comments: Vec<Value> = comments
                    .into_iter()
                    .map(|c| json!({ "author": c.author, "body": capped(&c.body, MAX_COMMENT) }))
                    .collect();
                return Ok(Done {
                    answer: json!({
                        "repo": item.repo, "number": issue.number, "title": issue.title,
                        "body": capped(&issue.body, MAX_BODY), "author": issue.author,
                        "state": issue.state, "labels": issue.labels, "url": issue.url,
                        "is_pull": issue.is_pull, "comments": comments,
                    }),
                    detail: None,
                });
            }
            Call::Comment { body } => {
                if self
                    .written_before(agent, &client, &item, txn, Written::Comment)
                    .await
                    .map_err(failed)?
                {
                    (format!("commented on {item} {BEFORE}"), None)
                } else {
                    client
                        .comment(&item, &marked(body, txn))
                        .await
                        .map_err(failed)?;
                    (format!("commented on {item}"), None)
                }
            }
            Call::Label { labels } => {
                client.add_labels(&item, labels).await.map_err(failed)?;
                (format!("labelled {item}: {}", labels.join(", ")), None)
            }
            Call::RequestReview { reviewers } => {
                client
                    .request_review(&item, reviewers)
                    .await
                    .map_err(failed)?;
                (
                    format!("asked {} to review {item}", reviewers.join(", ")),
                    None,
                )
            }
            Call::Review {
                body,
                comments,
                head_sha,
            } => {
                let current = client.get_pr(&item).await.map_err(failed)?.head_sha;
                same_head(&item, head_sha, &current).map_err(Failure::Refused)?;
                let e = review_event(body, comments, self.cfg().forge.review_may_approve);
                event = Some(e);
                let wire = e.wire(client.kind);
                let said = format!(
                    "reviewed {item}: {wire} at {head_sha} with {} line comment(s)",
                    comments.len()
                );
                let said = if self
                    .written_before(agent, &client, &item, txn, Written::Review)
                    .await
                    .map_err(failed)?
                {
                    format!("{said} {BEFORE}")
                } else {
                    client
                        .review(&item, e, &marked(body, txn), comments, head_sha)
                        .await
                        .map_err(failed)?;
                    said
                };
                (said, Some(format!("{wire} at {head_sha}")))
            }
            Call::Discuss { .. } => {
                return Err(Failure::Failed("forge_discuss makes no forge call".into()));
            }
        };
        // Done on the forge: nothing may fail the call from here (a re-run would write again).
        let mut answer = said;
        if let Some(line) = thread_line(&item, &call, event) {
            let thread_txn = format!("{txn}-thread");
            if let Err(e) = self
                .forge_thread_post(&item, Some(agent), &line, &thread_txn)
                .await
            {
                tracing::warn!(%agent, %item, error = %format!("{e:#}"), "a forge write was not said in its thread");
                answer.push_str(&format!(
                    " (not said in its thread: {e:#}; forge_discuss may say it)"
                ));
            }
        }
        Ok(Done {
            answer: Value::String(answer),
            detail,
        })
    }
}

#[cfg(test)]
mod tests;
