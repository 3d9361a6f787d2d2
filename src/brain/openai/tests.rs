//! The `openai` brain's decisions: the requests it builds and how it reads an answer, plain or
//! assembled from a stream by the core (`c0re::models::assemble_stream`).

use serde_json::{Value, json};

use super::*;
use crate::brain::model::Turn;
use crate::c0re::models::{StreamError, assemble_stream};

fn turn(history: usize) -> Turn {
    crate::brain::model::sample_turn(
        history,
        json!({"type": "object", "properties": {"notes": {"type": "string"}}}),
    )
}

#[test]
fn a_request_is_system_history_message_and_tools() {
    let t = turn(2);
    let defs = tool_defs(&t.tools);
    let r = request(&first_messages(&t), &defs);
    let roles: Vec<&str> = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "user", "assistant", "user"]
    );
    assert_eq!(r["messages"][0]["content"], "be brief");
    assert_eq!(r["messages"][1]["content"], "op wrote:\nq0");
    assert_eq!(r["messages"][4]["content"], "a1");
    assert_eq!(r["messages"][5]["content"], "op wrote:\nnow");
    assert_eq!(
        r["tools"],
        json!([{"type": "function", "function": {"name": "write_notes",
            "description": "Writes notes.",
            "parameters": {"type": "object", "properties": {"notes": {"type": "string"}}}}}])
    );
    // The model, the stream and its options are the core's (hive.toml, agent.toml): the
    // harness never names them.
    let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["messages", "tools"]);
    // No history: the system prompt and the message.
    assert_eq!(first_messages(&turn(0)).len(), 2);
}

fn answer(message: Value) -> Value {
    json!({"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})
}

#[test]
fn an_answer_is_text_or_tool_calls_in_order() {
    let (kept, step) = read_answer(&answer(json!({"role": "assistant", "content": "hi"}))).unwrap();
    assert_eq!(step, Step::Say("hi".into()));
    assert_eq!(kept, json!({"role": "assistant", "content": "hi"}));
    // No content at all is an empty reply, not a failure.
    let (_, step) = read_answer(&answer(json!({"role": "assistant"}))).unwrap();
    assert_eq!(step, Step::Say(String::new()));

    let call = |id: &str, args: Value| json!({"id": id, "type": "function", "function": {"name": "write_notes", "arguments": args}});
    let message = json!({"role": "assistant", "content": null, "tool_calls": [
        call("c1", json!("{\"notes\": \"x\"}")),
        call("c2", json!("{\"notes\": ")),
        call("c3", json!("  ")),
        call("c4", json!({"notes": "as an object"})),
    ]});
    let (kept, step) = read_answer(&answer(message.clone())).unwrap();
    // The assistant message goes back as it came: its tool_calls are what the tool messages
    // answer, by id.
    assert_eq!(kept, message);
    let Step::Call(calls) = step else {
        panic!("not calls: {step:?}")
    };
    let ids: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["c1", "c2", "c3", "c4"]);
    assert_eq!(calls[0].arguments, Ok(json!({"notes": "x"})));
    let bad = calls[1].arguments.as_ref().unwrap_err();
    assert!(
        bad.starts_with("error: the arguments are not valid JSON (")
            && bad.ends_with("call write_notes again with a JSON object that matches its schema"),
        "{bad}"
    );
    assert_eq!(calls[2].arguments, Ok(json!({})));
    assert_eq!(calls[3].arguments, Ok(json!({"notes": "as an object"})));
    assert_eq!(
        tool_message("c2", "error: no"),
        json!({"role": "tool", "tool_call_id": "c2", "content": "error: no"})
    );

    for nothing in [json!({}), json!({"choices": []}), json!({"error": "x"})] {
        match read_answer(&nothing) {
            Err(BrainError::Failed(why)) => assert_eq!(why, "the model's answer has no message"),
            other => panic!("{nothing}: {other:?}"),
        }
    }
}

/// Chat-completions chunks as server-sent events.
fn sse(chunks: &[Value]) -> String {
    chunks.iter().map(|c| format!("data: {c}\n\n")).collect()
}

fn delta(delta: Value, finish: Value) -> Value {
    json!({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

#[test]
fn a_streamed_answer_is_read_as_a_plain_one() {
    // Text in pieces, then the usage chunk (streamed only when the core asks for it).
    let text = sse(&[
        delta(json!({"role": "assistant", "content": "Hel"}), Value::Null),
        delta(json!({"content": "lo"}), Value::Null),
        delta(json!({}), json!("stop")),
        json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
    ]) + "data: [DONE]\n\n";
    let v = assemble_stream(&text).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 2);
    assert_eq!(read_answer(&v).unwrap().1, Step::Say("Hello".into()));
    // Without the usage chunk, there is no usage (the core counts nothing).
    let bare = sse(&[delta(json!({"content": "x"}), json!("stop"))]);
    assert_eq!(assemble_stream(&bare).unwrap()["usage"], Value::Null);

    // Two parallel calls, their ids, names and arguments split and interleaved by index.
    let tc = |i: u64, extra: Value| json!({"tool_calls": [{"index": i, "function": extra}]});
    let mut first = tc(0, json!({"name": "write_", "arguments": "{\"no"}));
    first["tool_calls"][0]["id"] = json!("call_a");
    first["tool_calls"][0]["type"] = json!("function");
    let mut second = tc(1, json!({"name": "read_notes", "arguments": ""}));
    second["tool_calls"][0]["id"] = json!("call_b");
    let text = sse(&[
        delta(first, Value::Null),
        delta(second, Value::Null),
        delta(
            tc(0, json!({"name": "notes", "arguments": "tes\": "})),
            Value::Null,
        ),
        delta(tc(0, json!({"arguments": "\"x\"}"})), Value::Null),
        delta(tc(1, json!({"arguments": "{}"})), json!("tool_calls")),
    ]) + "data: [DONE]\n\n";
    let v = assemble_stream(&text).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let (kept, step) = read_answer(&v).unwrap();
    assert_eq!(kept["tool_calls"][1]["type"], "function");
    let Step::Call(calls) = step else {
        panic!("not calls: {step:?}")
    };
    assert_eq!(
        calls,
        [
            ToolCall {
                id: "call_a".into(),
                name: "write_notes".into(),
                arguments: Ok(json!({"notes": "x"}))
            },
            ToolCall {
                id: "call_b".into(),
                name: "read_notes".into(),
                arguments: Ok(json!({}))
            },
        ]
    );

    // What cannot be read is said, not taken for an empty answer.
    let broken =
        sse(&[delta(json!({"content": "Hel"}), Value::Null)]) + "data: {\"choices\": [\n\n";
    let e = assemble_stream(&broken).unwrap_err();
    assert!(matches!(e, StreamError::BadChunk(_)), "{e:?}");
    assert!(e.to_string().starts_with("bad stream chunk: "), "{e}");
    assert!(matches!(
        assemble_stream(": keep-alive\n\n"),
        Err(StreamError::NoChunks)
    ));
    // A server that reports an error mid-stream (vLLM, llama.cpp do): the error, not "".
    let reported = sse(&[
        delta(json!({"content": "Hel"}), Value::Null),
        json!({"error": {"message": "out of memory", "code": 500}}),
    ]);
    let e = assemble_stream(&reported).unwrap_err();
    assert!(e.to_string().contains("out of memory"), "{e}");
}
