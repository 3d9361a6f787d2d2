//! What a streamed model call that failed is charged. Its events were passed on to the harness
//! as they came, so a call cut short (the size cap, a read error, a stream that does not
//! assemble) has still delivered output: recording it at zero tokens would let a harness read
//! up to the size cap of model output against no token or dollar budget.
//!
//! The rule ([`charged_after_failure`]): every usage the provider reported in the events that
//! were passed on counts (Anthropic's `message_start` and `message_delta`, OpenAI's `usage`
//! chunk), each field its largest value; input nobody reported is the request's size at
//! [`BYTES_PER_TOKEN`]; output is at least the text and tool input passed on, at the same rate.
//! An estimate errs on the side of the budget: a failed call may be charged a little more than
//! a provider would bill, never nothing for what the harness got.

use serde_json::Value;

use crate::config::Tokens;

/// Bytes per token for the estimates (a common rule of thumb for English text and JSON; on the
/// high side of tokens for most text, i.e. on the budget's side).
pub const BYTES_PER_TOKEN: usize = 4;

/// The tokens charged for a streamed call that failed after `passed` (the server-sent events
/// handed on, as read) had reached the harness; `request_bytes`: the size of the request sent.
/// Nothing passed on: nothing charged (the harness got nothing; as for any failed call).
pub fn charged_after_failure(passed: &str, request_bytes: usize) -> Tokens {
    let mut reported = Tokens::default();
    let mut content = 0usize;
    let mut any = false;
    for data in passed
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
    {
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        any = true;
        for usage in [&v["message"]["usage"], &v["usage"]] {
            if usage.is_object() {
                let t = super::tokens_of(usage);
                reported.input = reported.input.max(t.input);
                reported.output = reported.output.max(t.output);
                reported.cache_read = reported.cache_read.max(t.cache_read);
                reported.cache_write = reported.cache_write.max(t.cache_write);
            }
        }
        content += content_bytes(&v);
    }
    if !any {
        return Tokens::default();
    }
    let tokens = |bytes: usize| bytes.div_ceil(BYTES_PER_TOKEN) as u64;
    if reported.input + reported.cache_read + reported.cache_write == 0 {
        reported.input = tokens(request_bytes);
    }
    reported.output = reported.output.max(tokens(content));
    reported
}

/// The bytes of model output one event carries: Anthropic's text, thinking and tool-input
/// deltas; OpenAI's content and tool-call argument deltas.
fn content_bytes(v: &Value) -> usize {
    let len = |v: &Value| v.as_str().map_or(0, str::len);
    let delta = &v["delta"];
    let mut n = len(&delta["text"]) + len(&delta["partial_json"]) + len(&delta["thinking"]);
    for choice in v["choices"].as_array().into_iter().flatten() {
        let d = &choice["delta"];
        n += len(&d["content"]);
        for call in d["tool_calls"].as_array().into_iter().flatten() {
            n += len(&call["function"]["arguments"]);
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_stream_is_charged_for_what_was_passed_on() {
        struct Case {
            name: &'static str,
            passed: &'static str,
            request_bytes: usize,
            want: Tokens,
        }
        let t = |input, output, cache_read, cache_write| Tokens {
            input,
            output,
            cache_read,
            cache_write,
        };
        let cases = [
            Case {
                name: "nothing passed on: nothing charged",
                passed: "",
                request_bytes: 4000,
                want: t(0, 0, 0, 0),
            },
            Case {
                name: "anthropic cut mid-answer: the input message_start reported, output from the text",
                passed: "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":900,\"cache_read_input_tokens\":3000,\"output_tokens\":1}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"0123456789abcdef\"}}\n\n",
                request_bytes: 40000,
                want: t(900, 4, 3000, 0),
            },
            Case {
                name: "anthropic with its final message_delta: the reported output wins over the estimate",
                passed: "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\ndata: {\"delta\":{\"text\":\"hi\"}}\n\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":250}}\n\n",
                request_bytes: 400,
                want: t(10, 250, 0, 0),
            },
            Case {
                name: "openai without a usage chunk: input from the request's size, output from content and tool arguments",
                passed: "data: {\"choices\":[{\"delta\":{\"content\":\"abcdefgh\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"{\\\"a\\\":1}\"}}]}}]}\n\n",
                request_bytes: 1001,
                want: t(251, 4, 0, 0),
            },
            Case {
                name: "openai with its usage chunk",
                passed: "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":120,\"completion_tokens\":30,\"prompt_tokens_details\":{\"cached_tokens\":100}}}\n\n",
                request_bytes: 4000,
                want: t(20, 30, 100, 0),
            },
            Case {
                name: "events that are not JSON are not output",
                passed: "data: [DONE]\n\n: a comment\n\n",
                request_bytes: 4000,
                want: t(0, 0, 0, 0),
            },
        ];
        for c in cases {
            assert_eq!(
                charged_after_failure(c.passed, c.request_bytes),
                c.want,
                "{}",
                c.name
            );
        }
    }
}
