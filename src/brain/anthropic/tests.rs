//! The `anthropic` brain's decisions: the requests it builds and how it reads an answer, plain
//! or assembled from a stream by the core (`c0re::models::assemble_anthropic_stream`).

use serde_json::{Value, json};

use super::*;
use crate::brain::model::Turn;
use crate::c0re::models::{StreamError, assemble_anthropic_stream};

fn turn(history: usize) -> Turn {
    crate::brain::model::sample_turn(history, json!({"type": "object"}))
}

#[test]
fn a_request_has_system_apart_tools_and_max_tokens() {
    let t = turn(1);
    let defs = tool_defs(&t.tools);
    let r = request(&t, &first_messages(&t), &defs);
    // The system prompt is a field (the API has no system role), one cached text block.
    assert_eq!(
        r["system"],
        json!([{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}])
    );
    let roles: Vec<&str> = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    assert_eq!(r["messages"][0]["content"], "op wrote:\nq0");
    assert_eq!(r["messages"][2]["content"][0]["text"], "op wrote:\nnow");
    assert_eq!(r["max_tokens"], MAX_TOKENS);
    assert_eq!(r["tools"][0]["name"], "write_notes");
    assert_eq!(r["tools"][0]["input_schema"], json!({"type": "object"}));
    assert_eq!(r["tools"][0]["cache_control"], json!({"type": "ephemeral"}));
    // The model and the stream are the core's.
    let mut keys: Vec<&String> = r.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["max_tokens", "messages", "system", "tools"]);
}

#[test]
fn an_answer_is_text_or_tool_uses_in_order() {
    let text = json!({"content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        "stop_reason": "end_turn"});
    let (kept, step) = read_answer(&text);
    assert_eq!(step, Step::Say("one\ntwo".into()));
    assert_eq!(
        kept,
        json!({"role": "assistant", "content": text["content"]})
    );

    let uses = json!({"content": [
        {"type": "text", "text": "Noting."},
        {"type": "tool_use", "id": "t1", "name": "write_notes", "input": {"notes": "x"}},
        {"type": "tool_use", "id": "t2", "name": "write_notes", "input": "{\"notes\": "},
    ], "stop_reason": "tool_use"});
    let (kept, step) = read_answer(&uses);
    let Step::Use(calls) = step else {
        panic!("not tool uses: {step:?}")
    };
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (calls[0].id.as_str(), &calls[0].input),
        ("t1", &Ok(json!({"notes": "x"})))
    );
    assert_eq!(calls[1].id, "t2");
    let why = calls[1].input.as_ref().unwrap_err();
    assert!(
        why.starts_with("the input is not a JSON object (\"{\\\"notes\\\": \")"),
        "{why}"
    );
    // The kept message is one the API takes back: every tool_use input an object.
    assert_eq!(kept["content"][0]["text"], "Noting.");
    assert_eq!(kept["content"][1]["input"], json!({"notes": "x"}));
    assert_eq!(kept["content"][2]["input"], json!({}));
    assert_eq!(kept["content"][2]["id"], "t2");
    assert_eq!(
        tool_result("t2", "no", true),
        json!({"type": "tool_result", "tool_use_id": "t2", "content": "no", "is_error": true})
    );
    // No content: an empty reply.
    assert_eq!(read_answer(&json!({})).1, Step::Say(String::new()));
}

fn sse(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect()
}

#[test]
fn a_streamed_answer_is_read_as_a_plain_one() {
    let start = json!({"type": "message_start", "message": {"role": "assistant", "content": [],
        "usage": {"input_tokens": 9, "cache_read_input_tokens": 100, "output_tokens": 1}}});
    let events = [
        start.clone(),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me "}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "look."}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t1", "name": "write_notes", "input": {}}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"no"}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "tes\": \"x\"}"}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "t2", "name": "read_notes", "input": {}}}),
        json!({"type": "content_block_stop", "index": 2}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 12}}),
        json!({"type": "message_stop"}),
    ];
    let m = assemble_anthropic_stream(&sse(&events)).unwrap();
    assert_eq!(m["stop_reason"], "tool_use");
    assert_eq!(m["usage"]["output_tokens"], 12);
    assert_eq!(m["usage"]["cache_read_input_tokens"], 100);
    let Step::Use(calls) = read_answer(&m).1 else {
        panic!("not tool uses: {m}")
    };
    let got: Vec<(&str, &str, &Result<Value, String>)> = calls
        .iter()
        .map(|c| (c.id.as_str(), c.name.as_str(), &c.input))
        .collect();
    assert_eq!(
        got,
        [
            ("t1", "write_notes", &Ok(json!({"notes": "x"}))),
            // A tool without input streams none: its start block's `{}`.
            ("t2", "read_notes", &Ok(json!({}))),
        ]
    );

    // An input cut short stays a string; the brain tells the model and keeps `{}`.
    let cut = [
        start.clone(),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t1", "name": "write_notes", "input": {}}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"notes\": "}}),
        json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 4096}}),
    ];
    let m = assemble_anthropic_stream(&sse(&cut)).unwrap();
    assert_eq!(m["stop_reason"], "max_tokens");
    let (kept, step) = read_answer(&m);
    assert_eq!(kept["content"][0]["input"], json!({}));
    let Step::Use(calls) = step else {
        panic!("not tool uses: {m}")
    };
    assert!(calls[0].input.is_err());

    // What cannot be read is said.
    let broken = sse(std::slice::from_ref(&start)) + "event: ping\ndata: {nope\n\n";
    let e = assemble_anthropic_stream(&broken).unwrap_err();
    assert!(e.to_string().starts_with("bad stream event: "), "{e}");
    let early = sse(&[
        start.clone(),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}}),
    ]);
    assert!(matches!(
        assemble_anthropic_stream(&early),
        Err(StreamError::DeltaBeforeStart)
    ));
    let overloaded = sse(&[
        start,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ]);
    let e = assemble_anthropic_stream(&overloaded).unwrap_err();
    assert!(e.to_string().contains("overloaded_error"), "{e}");
    assert!(matches!(
        assemble_anthropic_stream("event: ping\ndata: {\"type\": \"ping\"}\n\n"),
        Err(StreamError::NoMessage)
    ));
}
