//! Exactly once for a turn's side effects. A harness that dies mid-turn gets the message again
//! and runs the turn again; a model brain may not even make the same calls. Each side-effecting
//! call is named by its agent's message, what it does to whom ([`effect_key`]) and how many such
//! calls came before it in this attempt; the first attempt's answer is recorded, and a later
//! attempt's same call gets that answer without doing it again. Its Matrix transaction id is
//! derived from the same name, so a crash between the send and the record is deduplicated by
//! the homeserver.

use std::collections::HashMap;

use serde_json::Value;

use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::wire::protocol::Response;

/// What a call does to whom, or `None` when it changes nothing (reads) or is idempotent by
/// itself (`write_notes` replaces the notes). A pure function; the table is in the tests.
pub fn effect_key(tool: &str, args: &Value) -> Option<String> {
    let s = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or("").trim();
    match tool {
        "reply" => Some("reply".into()),
        "send_message" => Some(format!("send_message:{}", s("to"))),
        "ask_operator" => Some("ask_operator".into()),
        "remind" => Some("remind".into()),
        "request_apply_commit" => Some(format!("request_apply_commit:{}:{}", s("agent"), s("sha"))),
        "request_init_config" => Some(format!("request_init_config:{}", s("name"))),
        "request_rollback" => Some(format!(
            "request_rollback:{}:{}",
            s("agent"),
            args.get("deploy").map(Value::to_string).unwrap_or_default()
        )),
        // A re-run turn does not restart the agent a second time (`stop` and `start` are
        // idempotent by themselves).
        "restart" => Some(format!("restart:{}", s("agent"))),
        "destroy" | "revive" | "purge" => Some(format!("{tool}:{}", s("agent"))),
        // A commit on the proposed side: a re-run turn gets the first commit's sha back.
        // Keyed by what it writes too: a re-run turn writing something else is not answered
        // with the first commit.
        "write_config" => {
            let what = |k: &str| args.get(k).map(Value::to_string).unwrap_or_default();
            Some(format!(
                "write_config:{}:{}",
                s("agent"),
                digest(&format!("{}\0{}", what("files"), what("message")))
            ))
        }
        // A forge write, or a line in an item's thread: a re-run turn does not post twice.
        // Keyed by the item as the forge names it (the repository parsed, lowercased: the
        // forge does not tell `Acme/Widgets` from `acme/widgets`; the number read as one).
        "forge_comment"
        | "forge_label"
        | "forge_request_review"
        | "forge_review"
        | "forge_discuss" => {
            let repo = crate::forge::RepoName::parse(s("repo"))
                .map_or_else(|_| s("repo").to_owned(), |r| r.to_string());
            let number = args.get("number");
            let number = number
                .and_then(Value::as_u64)
                .map(|n| n.to_string())
                .or_else(|| number.map(Value::to_string))
                .unwrap_or_default();
            Some(format!("{tool}:{}#{number}", repo.to_ascii_lowercase()))
        }
        _ => None,
    }
}

/// The message an agent is handling now, and the calls it made so far in this attempt.
#[derive(Debug, Default)]
pub struct TurnCalls {
    pub inbox_id: i64,
    counts: HashMap<String, u32>,
}

impl TurnCalls {
    pub fn new(inbox_id: i64) -> Self {
        Self {
            inbox_id,
            counts: HashMap::new(),
        }
    }

    /// The occurrence of one more call named `key` in this attempt (1 for the first).
    pub fn next(&mut self, key: &str) -> u32 {
        let n = self.counts.entry(key.to_owned()).or_default();
        *n += 1;
        *n
    }
}

/// One side-effecting call of a turn.
#[derive(Debug, Clone)]
pub struct Effect {
    pub inbox_id: i64,
    pub key: String,
    pub occurrence: u32,
    /// The Matrix transaction id for what it sends: the same for the same call in every attempt.
    pub txn: String,
    /// The answer an earlier attempt got: return it, do nothing.
    pub recorded: Option<Response>,
}

/// A short stable digest of `key` for transaction ids (which must stay short and URL-safe).
fn digest(key: &str) -> String {
    use sha1::Digest;
    sha1::Sha1::digest(key.as_bytes())[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The Matrix transaction id of one side-effecting call: the same in every attempt of the turn
/// (so the homeserver drops a second send), different for every other call.
pub fn effect_txn(agent: &AgentName, inbox_id: i64, key: &str, occurrence: u32) -> String {
    format!("hh-{agent}-{inbox_id}-{}-{occurrence}", digest(key))
}

/// Whether an answer is recorded for a re-run: a success only. A refusal changed nothing, so a
/// re-run may try again (and may be allowed this time).
pub fn is_recorded(response: &Response) -> bool {
    !matches!(
        response,
        Response::Error { .. } | Response::ToolResult { is_error: true, .. }
    )
}

impl Core {
    /// Names a side-effecting call of `agent`'s current turn. `None` outside a turn (no message
    /// in flight) or for calls that change nothing.
    pub fn begin_effect(&self, agent: &AgentName, tool: &str, args: &Value) -> Option<Effect> {
        let key = effect_key(tool, args)?;
        let entry = self.agents().get(agent)?;
        let (inbox_id, occurrence) = {
            let mut turn = entry.turn.lock().unwrap_or_else(|p| p.into_inner());
            let t = turn.as_mut()?;
            (t.inbox_id, t.next(&key))
        };
        let recorded = match self
            .store()
            .tool_effect(agent.as_str(), inbox_id, &key, occurrence)
        {
            Ok(r) => r.and_then(|text| match serde_json::from_str(&text) {
                Ok(response) => Some(response),
                Err(e) => {
                    tracing::error!(%agent, key, occurrence, error = %e, "a turn's recorded effect does not parse; the call runs again");
                    None
                }
            }),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot read a turn's recorded effects");
                None
            }
        };
        Some(Effect {
            txn: effect_txn(agent, inbox_id, &key, occurrence),
            inbox_id,
            key,
            occurrence,
            recorded,
        })
    }

    /// Records what the call answered (only a success: a refusal changed nothing).
    pub fn record_effect(&self, agent: &AgentName, e: &Effect, response: &Response) {
        let text = match serde_json::to_string(response) {
            Ok(t) => t,
            Err(err) => {
                tracing::error!(error = %err, "cannot record a turn's effect");
                return;
            }
        };
        if let Err(err) =
            self.store()
                .record_tool_effect(agent.as_str(), e.inbox_id, &e.key, e.occurrence, &text)
        {
            tracing::error!(error = %format!("{err:#}"), "cannot record a turn's effect; a re-run may repeat it");
        }
    }
}

impl Core {
    /// Runs a side-effecting call of `agent`'s turn at most once across re-runs of the turn:
    /// an earlier attempt's answer is returned as it was; otherwise `run` gets the call's stable
    /// transaction id (`fallback_txn` outside a turn) and a success is recorded.
    pub async fn once<F, Fut>(
        &self,
        agent: &AgentName,
        tool: &str,
        args: &Value,
        fallback_txn: String,
        run: F,
    ) -> Response
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Response>,
    {
        let effect = self.begin_effect(agent, tool, args);
        if let Some(recorded) = effect.as_ref().and_then(|e| e.recorded.clone()) {
            tracing::info!(%agent, tool, "a re-run turn's call: answered as the first time, not done again");
            return recorded;
        }
        let txn = effect.as_ref().map_or(fallback_txn, |e| e.txn.clone());
        let response = run(txn).await;
        if is_recorded(&response)
            && let Some(e) = &effect
        {
            self.record_effect(agent, e, &response);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn which_calls_are_effects() {
        struct Case {
            name: &'static str,
            tool: &'static str,
            args: Value,
            want: Option<&'static str>,
        }
        let cases = [
            Case {
                name: "a reply is one effect per turn call",
                tool: "reply",
                args: json!({"body": "x"}),
                want: Some("reply"),
            },
            Case {
                name: "a send is keyed by its recipient, trimmed",
                tool: "send_message",
                args: json!({"to": " argus ", "body": "x"}),
                want: Some("send_message:argus"),
            },
            Case {
                name: "a question",
                tool: "ask_operator",
                args: json!({"question": "?"}),
                want: Some("ask_operator"),
            },
            Case {
                name: "a reminder",
                tool: "remind",
                args: json!({"in_secs": 5, "text": "t"}),
                want: Some("remind"),
            },
            Case {
                name: "an apply request is keyed by agent and sha",
                tool: "request_apply_commit",
                args: json!({"agent": "echo", "sha": "ab", "summary": "s"}),
                want: Some("request_apply_commit:echo:ab"),
            },
            Case {
                name: "a spawn request is keyed by the name",
                tool: "request_init_config",
                args: json!({"name": "n"}),
                want: Some("request_init_config:n"),
            },
            Case {
                name: "a rollback request is keyed by agent and deploy",
                tool: "request_rollback",
                args: json!({"agent": "echo", "deploy": 2}),
                want: Some("request_rollback:echo:2"),
            },
            Case {
                name: "a destroy, revive or purge is keyed by the agent",
                tool: "purge",
                args: json!({"agent": "echo", "summary": "s"}),
                want: Some("purge:echo"),
            },
            Case {
                name: "a config commit is keyed by the agent and what it writes",
                tool: "write_config",
                args: json!({"agent": "echo", "files": [], "message": "m"}),
                want: Some("write_config:echo:1194b557024f"),
            },
            Case {
                name: "reading a config changes nothing",
                tool: "read_config",
                args: json!({"agent": "echo"}),
                want: None,
            },
            Case {
                name: "reading notes changes nothing",
                tool: "read_notes",
                args: json!({}),
                want: None,
            },
            Case {
                name: "writing notes is idempotent by itself",
                tool: "write_notes",
                args: json!({"notes": "n"}),
                want: None,
            },
            Case {
                name: "a restart is keyed by the agent",
                tool: "restart",
                args: json!({"agent": "echo"}),
                want: Some("restart:echo"),
            },
            Case {
                name: "a stop is idempotent by itself",
                tool: "stop",
                args: json!({"agent": "echo"}),
                want: None,
            },
            Case {
                name: "listing agents changes nothing",
                tool: "list_agents",
                args: json!({}),
                want: None,
            },
            Case {
                name: "pulling the inbox is no recorded effect: a re-run turn pulls again",
                tool: "recv",
                args: json!({"wait_secs": 5}),
                want: None,
            },
            Case {
                name: "a forge comment is keyed by the item",
                tool: "forge_comment",
                args: json!({"repo": "acme/widgets", "number": 5, "body": "b"}),
                want: Some("forge_comment:acme/widgets#5"),
            },
            Case {
                name: "a forge review is keyed by the item",
                tool: "forge_review",
                args: json!({"repo": "acme/widgets", "number": 5, "body": "🔴"}),
                want: Some("forge_review:acme/widgets#5"),
            },
            Case {
                name: "a forge write's item is keyed as the forge names it: case and spaces aside",
                tool: "forge_comment",
                args: json!({"repo": " Acme/Widgets ", "number": 5, "body": "b"}),
                want: Some("forge_comment:acme/widgets#5"),
            },
            Case {
                name: "a number that is no integer keeps its text (parse_call refuses it)",
                tool: "forge_label",
                args: json!({"repo": "acme/widgets", "number": 5.0, "labels": ["x"]}),
                want: Some("forge_label:acme/widgets#5.0"),
            },
            Case {
                name: "a line in an item's thread is keyed by the item",
                tool: "forge_discuss",
                args: json!({"repo": "acme/widgets", "number": 7, "body": "b"}),
                want: Some("forge_discuss:acme/widgets#7"),
            },
            Case {
                name: "reading a pull request changes nothing",
                tool: "forge_get_pr",
                args: json!({"repo": "acme/widgets", "number": 5}),
                want: None,
            },
            Case {
                name: "an unknown tool is no effect",
                tool: "no_such_tool",
                args: json!({}),
                want: None,
            },
        ];
        let key = |files: Value, message: &str| {
            effect_key(
                "write_config",
                &json!({"agent": "echo", "files": files, "message": message}),
            )
        };
        assert_eq!(
            key(json!([{"path": "a", "content": "x"}]), "m"),
            key(json!([{"path": "a", "content": "x"}]), "m")
        );
        assert_ne!(
            key(json!([{"path": "a", "content": "x"}]), "m"),
            key(json!([{"path": "a", "content": "y"}]), "m"),
            "other content, another key"
        );
        assert_ne!(
            key(json!([]), "m"),
            key(json!([]), "n"),
            "another message, another key"
        );
        for c in cases {
            assert_eq!(effect_key(c.tool, &c.args).as_deref(), c.want, "{}", c.name);
        }
    }

    #[test]
    fn which_answers_are_recorded() {
        use crate::wire::protocol::ErrorCode;
        struct Case {
            name: &'static str,
            response: Response,
            want: bool,
        }
        let cases = [
            Case {
                name: "a message sent",
                response: Response::Sent {
                    event_id: "$e".into(),
                },
                want: true,
            },
            Case {
                name: "a request filed",
                response: Response::Requested { approval_id: 3 },
                want: true,
            },
            Case {
                name: "a tool that worked",
                response: Response::ToolResult {
                    content: "sent ($e)".into(),
                    is_error: false,
                },
                want: true,
            },
            Case {
                name: "a tool that failed changed nothing",
                response: Response::ToolResult {
                    content: "rate limit: …".into(),
                    is_error: true,
                },
                want: false,
            },
            Case {
                name: "a refusal changed nothing",
                response: Response::Error {
                    code: ErrorCode::NotAllowed,
                    message: "no".into(),
                },
                want: false,
            },
        ];
        for c in cases {
            assert_eq!(is_recorded(&c.response), c.want, "{}", c.name);
        }
    }

    #[test]
    fn transaction_ids_name_the_call() {
        let echo = AgentName::parse("echo").expect("a valid name");
        let txn = effect_txn(&echo, 7, "reply", 1);
        assert_eq!(txn, format!("hh-echo-7-{}-1", digest("reply")));
        assert_eq!(
            txn,
            effect_txn(&echo, 7, "reply", 1),
            "stable across attempts"
        );
        for other in [
            effect_txn(&echo, 8, "reply", 1),
            effect_txn(&echo, 7, "send_message:argus", 1),
            effect_txn(&echo, 7, "reply", 2),
            effect_txn(
                &AgentName::parse("argus").expect("a valid name"),
                7,
                "reply",
                1,
            ),
        ] {
            assert_ne!(txn, other);
        }
    }

    #[test]
    fn occurrences_count_per_key() {
        let mut t = TurnCalls::new(7);
        assert_eq!(t.next("send_message:argus"), 1);
        assert_eq!(t.next("send_message:iris"), 1);
        assert_eq!(t.next("send_message:argus"), 2);
        assert_eq!(digest("a"), digest("a"));
        assert_ne!(digest("a"), digest("b"));
        assert_eq!(digest("reply").len(), 12);
    }
}
