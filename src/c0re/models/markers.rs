//! Prompt-cache markers a harness may put in a request: the allow-list of what `cache_control`
//! may say inside `messages`, `system` and `tools` (the top-level fields are allow-listed
//! apart). A pure decision over the request body.
//!
//! The rules (the table is in the tests):
//! - Anthropic: `cache_control` is `{"type": "ephemeral"}`, optionally with `"ttl": "5m"`; any
//!   other value (the 1-hour TTL, which bills writes at twice the 5-minute price and is not in
//!   hive.toml's prices, or a key the core does not know) is refused.
//! - At most [`MAX_BREAKPOINTS`] markers in a request: Anthropic's own limit, checked before
//!   anything is sent.
//! - OpenAI-compatible servers cache prefixes on their own: a `cache_control` anywhere is
//!   refused (it is not their API, and a gateway could read it as something else).

use serde_json::Value;

use crate::config::ProviderKind;

/// Cache breakpoints one Messages request may carry (Anthropic's limit).
pub const MAX_BREAKPOINTS: usize = 4;

/// Why a request's cache markers are refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MarkerRefused {
    #[error("cache_control is not sent to an OpenAI-compatible server (it caches on its own)")]
    NotThisApi,
    #[error("cache_control may be {{\"type\": \"ephemeral\"}} (ttl \"5m\" at most), not {0}")]
    Value(String),
    #[error("{0} cache_control markers; a request may carry at most {MAX_BREAKPOINTS}")]
    TooMany(usize),
}

/// Checks every `cache_control` in `body` (at any depth) against the rules above.
pub fn markers_allowed(
    kind: ProviderKind,
    body: &serde_json::Map<String, Value>,
) -> Result<(), MarkerRefused> {
    let mut count = 0;
    let mut stack: Vec<&Value> = body.values().collect();
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(a) => stack.extend(a),
            Value::Object(o) => {
                if let Some(marker) = o.get("cache_control") {
                    if kind == ProviderKind::Openai {
                        return Err(MarkerRefused::NotThisApi);
                    }
                    if !allowed_marker(marker) {
                        return Err(MarkerRefused::Value(marker.to_string()));
                    }
                    count += 1;
                }
                stack.extend(o.iter().filter(|(k, _)| *k != "cache_control").map(|(_, v)| v));
            }
            _ => {}
        }
    }
    if count > MAX_BREAKPOINTS {
        return Err(MarkerRefused::TooMany(count));
    }
    Ok(())
}

/// `{"type": "ephemeral"}` or `{"type": "ephemeral", "ttl": "5m"}`, nothing else.
fn allowed_marker(marker: &Value) -> bool {
    let Some(o) = marker.as_object() else {
        return false;
    };
    o.get("type").and_then(Value::as_str) == Some("ephemeral")
        && o.iter().all(|(k, v)| match k.as_str() {
            "type" => true,
            "ttl" => v.as_str() == Some("5m"),
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cache_markers_are_allow_listed() {
        struct Case {
            name: &'static str,
            kind: ProviderKind,
            body: Value,
            want: Result<(), MarkerRefused>,
        }
        let eph = json!({"type": "ephemeral"});
        let block = |m: &Value| json!({"type": "text", "text": "x", "cache_control": m});
        let cases = [
            Case {
                name: "no markers",
                kind: ProviderKind::Anthropic,
                body: json!({"messages": [{"role": "user", "content": "hi"}]}),
                want: Ok(()),
            },
            Case {
                name: "four ephemeral markers: tool, system, two messages",
                kind: ProviderKind::Anthropic,
                body: json!({
                    "tools": [{"name": "t", "input_schema": {}, "cache_control": eph}],
                    "system": [block(&eph)],
                    "messages": [{"role": "user", "content": [block(&eph)]},
                                 {"role": "user", "content": [block(&json!({"type": "ephemeral", "ttl": "5m"}))]}],
                }),
                want: Ok(()),
            },
            Case {
                name: "five markers",
                kind: ProviderKind::Anthropic,
                body: json!({"system": [block(&eph), block(&eph), block(&eph)],
                    "messages": [{"role": "user", "content": [block(&eph), block(&eph)]}]}),
                want: Err(MarkerRefused::TooMany(5)),
            },
            Case {
                name: "the 1-hour ttl",
                kind: ProviderKind::Anthropic,
                body: json!({"system": [block(&json!({"type": "ephemeral", "ttl": "1h"}))]}),
                want: Err(MarkerRefused::Value(r#"{"ttl":"1h","type":"ephemeral"}"#.into())),
            },
            Case {
                name: "another type",
                kind: ProviderKind::Anthropic,
                body: json!({"system": [block(&json!({"type": "persistent"}))]}),
                want: Err(MarkerRefused::Value(r#"{"type":"persistent"}"#.into())),
            },
            Case {
                name: "an unknown key beside the type",
                kind: ProviderKind::Anthropic,
                body: json!({"tools": [{"name": "t", "cache_control": {"type": "ephemeral", "scope": "org"}}]}),
                want: Err(MarkerRefused::Value(
                    r#"{"scope":"org","type":"ephemeral"}"#.into(),
                )),
            },
            Case {
                name: "not an object",
                kind: ProviderKind::Anthropic,
                body: json!({"system": [block(&json!("ephemeral"))]}),
                want: Err(MarkerRefused::Value(r#""ephemeral""#.into())),
            },
            Case {
                name: "nested in a tool result",
                kind: ProviderKind::Anthropic,
                body: json!({"messages": [{"role": "user", "content": [{"type": "tool_result",
                    "content": [block(&json!({"type": "x"}))]}]}]}),
                want: Err(MarkerRefused::Value(r#"{"type":"x"}"#.into())),
            },
            Case {
                name: "any marker to an OpenAI-compatible server",
                kind: ProviderKind::Openai,
                body: json!({"messages": [{"role": "user", "content": [block(&eph)]}]}),
                want: Err(MarkerRefused::NotThisApi),
            },
        ];
        for c in cases {
            let body = c.body.as_object().expect("an object").clone();
            assert_eq!(markers_allowed(c.kind, &body), c.want, "{}", c.name);
        }
    }
}
