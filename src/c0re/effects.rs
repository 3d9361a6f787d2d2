//! Exactly once for a turn's side effects. A harness that dies mid-turn gets the message again
//! and runs the turn again; a model brain may not even make the same calls. Each side-effecting
//! call is named by its agent's message, what it does to whom ([`effect_key`]) and how many such
//! calls came before it in this attempt; the first attempt's answer is recorded, and a later
//! attempt's same call gets that answer without doing it again. Its Matrix transaction id is
//! derived from the same name, so a crash between the send and the record is deduplicated by
//! the homeserver.

use std::collections::HashMap;

use serde_json::Value;

use super::Core;
use crate::agent_spec::AgentName;
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

impl Core {
    /// Names a side-effecting call of `agent`'s current turn. `None` outside a turn (no message
    /// in flight) or for calls that change nothing.
    pub fn begin_effect(&self, agent: &AgentName, tool: &str, args: &Value) -> Option<Effect> {
        let key = effect_key(tool, args)?;
        let entry = self.agent(agent)?;
        let (inbox_id, occurrence) = {
            let mut turn = entry.turn.lock().unwrap_or_else(|p| p.into_inner());
            let t = turn.as_mut()?;
            (t.inbox_id, t.next(&key))
        };
        let recorded = match self
            .store()
            .tool_effect(agent.as_str(), inbox_id, &key, occurrence)
        {
            Ok(r) => r.and_then(|text| serde_json::from_str(&text).ok()),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot read a turn's recorded effects");
                None
            }
        };
        Some(Effect {
            txn: format!("hh-{agent}-{inbox_id}-{}-{occurrence}", digest(&key)),
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
        let ok = !matches!(
            response,
            Response::Error { .. } | Response::ToolResult { is_error: true, .. }
        );
        if ok && let Some(e) = &effect {
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
        let cases = [
            ("reply", json!({"body": "x"}), Some("reply")),
            (
                "send_message",
                json!({"to": " argus ", "body": "x"}),
                Some("send_message:argus"),
            ),
            (
                "ask_operator",
                json!({"question": "?"}),
                Some("ask_operator"),
            ),
            ("remind", json!({"in_secs": 5, "text": "t"}), Some("remind")),
            (
                "request_apply_commit",
                json!({"agent": "echo", "sha": "ab", "summary": "s"}),
                Some("request_apply_commit:echo:ab"),
            ),
            (
                "request_init_config",
                json!({"name": "n"}),
                Some("request_init_config:n"),
            ),
            ("read_notes", json!({}), None),
            ("write_notes", json!({"notes": "n"}), None),
            ("list_agents", json!({}), None),
            ("no_such_tool", json!({}), None),
        ];
        for (tool, args, want) in cases {
            assert_eq!(effect_key(tool, &args).as_deref(), want, "{tool}");
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
