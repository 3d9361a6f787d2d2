//! Prompt-cache markers a harness may put in a request: what `cache_control` may say inside
//! `messages`, `system` and `tools` (the top-level fields are allow-listed apart). A pure
//! function over the request body, which it checks and trims.
//!
//! The rules (the table is in the tests):
//! - Anthropic: a marker is `{"type": "ephemeral"}`, optionally with `"ttl": "5m"`. Anything
//!   else beside the type is dropped before the request is sent: the 1-hour TTL (writes billed
//!   at twice the 5-minute price, which hive.toml's `cache_write` does not price), a `scope`,
//!   any key the core does not know. Claude Code's CLI sends some of these; trimmed, its
//!   request still goes, cached for 5 minutes. A marker that is not an object of type
//!   `ephemeral` is refused.
//! - At most [`MAX_BREAKPOINTS`] markers in a request: Anthropic's own limit, checked before
//!   anything is sent.
//! - OpenAI-compatible servers cache prefixes on their own: a `cache_control` anywhere is
//!   refused (it is not their API, and a gateway could read it as something else).

use serde_json::{Value, json};

use crate::config::ProviderKind;

/// Cache breakpoints one Messages request may carry (Anthropic's limit).
pub const MAX_BREAKPOINTS: usize = 4;

/// Why a request's cache markers are refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MarkerRefused {
    #[error("cache_control is not sent to an OpenAI-compatible server (it caches on its own)")]
    NotThisApi,
    #[error("cache_control must be {{\"type\": \"ephemeral\"}}, not {0}")]
    Value(String),
    #[error("{0} cache_control markers; a request may carry at most {MAX_BREAKPOINTS}")]
    TooMany(usize),
}

/// Checks every `cache_control` in `body` (at any depth) against the rules above, trimming each
/// to what the core allows.
pub fn markers_allowed(
    kind: ProviderKind,
    body: &mut serde_json::Map<String, Value>,
) -> Result<(), MarkerRefused> {
    let mut count = 0;
    let mut stack: Vec<&mut Value> = body.values_mut().collect();
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(a) => stack.extend(a.iter_mut()),
            Value::Object(o) => {
                if let Some(marker) = o.get_mut("cache_control") {
                    if kind == ProviderKind::Openai {
                        return Err(MarkerRefused::NotThisApi);
                    }
                    *marker = allowed_marker(marker)
                        .ok_or_else(|| MarkerRefused::Value(marker.to_string()))?;
                    count += 1;
                }
                stack.extend(
                    o.iter_mut()
                        .filter(|(k, _)| *k != "cache_control")
                        .map(|(_, v)| v),
                );
            }
            _ => {}
        }
    }
    if count > MAX_BREAKPOINTS {
        return Err(MarkerRefused::TooMany(count));
    }
    Ok(())
}

/// The marker as the core sends it (`None`: refused).
fn allowed_marker(marker: &Value) -> Option<Value> {
    if marker.get("type").and_then(Value::as_str) != Some("ephemeral") {
        return None;
    }
    Some(match marker["ttl"].as_str() {
        Some("5m") => json!({"type": "ephemeral", "ttl": "5m"}),
        _ => json!({"type": "ephemeral"}),
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
            /// Refused, or the body as sent.
            want: Result<Value, MarkerRefused>,
        }
        let eph = json!({"type": "ephemeral"});
        let block = |m: &Value| json!({"type": "text", "text": "x", "cache_control": m});
        let cases = [
            Case {
                name: "no markers",
                kind: ProviderKind::Anthropic,
                body: json!({"messages": [{"role": "user", "content": "hi"}]}),
                want: Ok(json!({"messages": [{"role": "user", "content": "hi"}]})),
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
                want: Ok(json!({
                    "tools": [{"name": "t", "input_schema": {}, "cache_control": eph}],
                    "system": [block(&eph)],
                    "messages": [{"role": "user", "content": [block(&eph)]},
                                 {"role": "user", "content": [block(&json!({"type": "ephemeral", "ttl": "5m"}))]}],
                })),
            },
            Case {
                name: "five markers",
                kind: ProviderKind::Anthropic,
                body: json!({"system": [block(&eph), block(&eph), block(&eph)],
                    "messages": [{"role": "user", "content": [block(&eph), block(&eph)]}]}),
                want: Err(MarkerRefused::TooMany(5)),
            },
            Case {
                name: "the 1-hour ttl is dropped: 5 minutes",
                kind: ProviderKind::Anthropic,
                body: json!({"system": [block(&json!({"type": "ephemeral", "ttl": "1h"}))]}),
                want: Ok(json!({"system": [block(&eph)]})),
            },
            Case {
                name: "another type",
                kind: ProviderKind::Anthropic,
                body: json!({"system": [block(&json!({"type": "persistent"}))]}),
                want: Err(MarkerRefused::Value(r#"{"type":"persistent"}"#.into())),
            },
            Case {
                name: "a scope and an unknown key beside the type are dropped",
                kind: ProviderKind::Anthropic,
                body: json!({"tools": [{"name": "t", "cache_control": {"type": "ephemeral", "scope": "global", "evict": true}}]}),
                want: Ok(json!({"tools": [{"name": "t", "cache_control": eph}]})),
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
            let mut body = c.body.as_object().expect("an object").clone();
            let got = markers_allowed(c.kind, &mut body).map(|()| Value::Object(body));
            assert_eq!(got, c.want, "{}", c.name);
        }
    }
}
