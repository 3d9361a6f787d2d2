//! Prompt-cache breakpoints for the `anthropic` brain's requests. Its tools, system prompt and
//! history repeat on every call of a conversation; marked, the provider bills them as cache
//! reads (a tenth of the input price) from the second call on instead of full input.
//!
//! Where the marks go (at most four, Anthropic's limit; the table is in the tests). A request
//! is cached in the order tools → system → messages, each mark caching everything before it:
//! - the last tool: the tool list, stable across turns unless a server comes or goes;
//! - the system prompt: tools and system;
//! - the last history message: the remembered exchanges, stable for the whole turn and the
//!   start of the next one's prefix (the provider also looks back from a mark for an earlier
//!   hit, so last turn's prefix is read even after the history moved on);
//! - the last message of the request: the turn so far, which the turn's next call (after its
//!   tool results) repeats whole.
//!
//! Nothing is marked twice (with no history, the last message is the only message mark), and
//! a string content becomes one text block (marks sit on blocks).

use serde_json::{Value, json};

/// Marks `request` (a Messages request the brain built, `history` of its messages being the
/// remembered exchanges) with its cache breakpoints.
pub fn mark_cache(request: &mut Value, history: usize) {
    let eph = || json!({"type": "ephemeral"});
    if let Some(last) = request["tools"].as_array_mut().and_then(|t| t.last_mut()) {
        last["cache_control"] = eph();
    }
    match &request["system"] {
        Value::String(s) if !s.is_empty() => {
            request["system"] = json!([{"type": "text", "text": s, "cache_control": eph()}]);
        }
        Value::Array(_) => mark_last_block(&mut request["system"]),
        _ => {}
    }
    let Some(messages) = request["messages"].as_array_mut() else {
        return;
    };
    let last = messages.len().checked_sub(1);
    let stable = history.min(messages.len()).checked_sub(1);
    for i in [stable, last]
        .into_iter()
        .flatten()
        .collect::<std::collections::BTreeSet<_>>()
    {
        let content = &mut messages[i]["content"];
        if let Value::String(s) = content {
            *content = json!([{"type": "text", "text": s}]);
        }
        mark_last_block(content);
    }
}

/// Puts the mark on the last block of a block list (an empty list is left alone).
fn mark_last_block(blocks: &mut Value) {
    if let Some(last) = blocks.as_array_mut().and_then(|b| b.last_mut())
        && last.is_object()
    {
        last["cache_control"] = json!({"type": "ephemeral"});
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the marks are: "tool <i>", "system <i>", "message <i>.<block>".
    fn marks(request: &Value) -> Vec<String> {
        let mut out = Vec::new();
        let marked = |v: &Value| v.get("cache_control") == Some(&json!({"type": "ephemeral"}));
        for (i, t) in request["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if marked(t) {
                out.push(format!("tool {i}"));
            }
        }
        for (i, b) in request["system"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if marked(b) {
                out.push(format!("system {i}"));
            }
        }
        for (i, m) in request["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            for (j, b) in m["content"].as_array().into_iter().flatten().enumerate() {
                if marked(b) {
                    out.push(format!("message {i}.{j}"));
                }
            }
        }
        out
    }

    #[test]
    fn breakpoints_mark_the_stable_prefix() {
        struct Case {
            name: &'static str,
            request: Value,
            history: usize,
            want: &'static [&'static str],
        }
        let tools = json!([{"name": "a", "input_schema": {}}, {"name": "b", "input_schema": {}}]);
        let user = |t: &str| json!({"role": "user", "content": t});
        let said = |t: &str| json!({"role": "assistant", "content": t});
        let results = json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "1", "content": "x"},
            {"type": "tool_result", "tool_use_id": "2", "content": "y"}]});
        let cases = [
            Case {
                name: "first call, no history: tools, system, the message",
                request: json!({"tools": tools, "system": "be brief", "messages": [user("hi")]}),
                history: 0,
                want: &["tool 1", "system 0", "message 0.0"],
            },
            Case {
                name: "with history: its last message and the new one",
                request: json!({"tools": tools, "system": "s",
                    "messages": [user("q1"), said("a1"), user("q2"), said("a2"), user("q3")]}),
                history: 4,
                want: &["tool 1", "system 0", "message 3.0", "message 4.0"],
            },
            Case {
                name: "later in the turn: the last block of the tool results",
                request: json!({"tools": tools, "system": "s", "messages": [user("q1"), said("a1"),
                    user("q2"), json!({"role": "assistant", "content": [{"type": "tool_use", "id": "1"}]}), results]}),
                history: 2,
                want: &["tool 1", "system 0", "message 1.0", "message 4.1"],
            },
            Case {
                name: "no tools, a compact's call",
                request: json!({"system": "summarise", "messages": [user("transcript")]}),
                history: 0,
                want: &["system 0", "message 0.0"],
            },
            Case {
                name: "an empty system prompt is not marked",
                request: json!({"system": "", "messages": [user("q")]}),
                history: 0,
                want: &["message 0.0"],
            },
            Case {
                name: "history as long as the messages: one mark, not two",
                request: json!({"messages": [user("q1"), said("a1")]}),
                history: 2,
                want: &["message 1.0"],
            },
        ];
        for mut c in cases {
            mark_cache(&mut c.request, c.history);
            assert_eq!(marks(&c.request), c.want, "{}", c.name);
            let n = c.want.len();
            assert!(n <= crate::c0re::models::MAX_BREAKPOINTS, "{}", c.name);
            // What the core allows.
            // What the core allows, as it is.
            let mut body = c.request.as_object().expect("an object").clone();
            assert_eq!(
                crate::c0re::models::markers_allowed(
                    crate::config::ProviderKind::Anthropic,
                    &mut body
                ),
                Ok(()),
                "{}",
                c.name
            );
            assert_eq!(Value::Object(body), c.request, "{}", c.name);
        }
        // Text survives the move into a block.
        let mut r = json!({"system": "be brief", "messages": [user("hi")]});
        mark_cache(&mut r, 0);
        assert_eq!(r["system"][0]["text"], "be brief");
        assert_eq!(r["messages"][0]["content"][0]["text"], "hi");
    }
}
