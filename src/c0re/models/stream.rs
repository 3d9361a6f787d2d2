//! A model server's streamed answer (server-sent events) assembled into the one response the
//! brain reads: pure functions over the text, with a typed error.

use serde_json::{Value, json};

/// Why a streamed answer could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("bad stream chunk: {0}")]
    BadChunk(serde_json::Error),
    #[error("bad stream event: {0}")]
    BadEvent(serde_json::Error),
    #[error("the stream held no chunks")]
    NoChunks,
    #[error("a delta for a block that never started")]
    DeltaBeforeStart,
    #[error("the model server reported {0}")]
    Reported(String),
    #[error("the stream held no message")]
    NoMessage,
}

/// Assembles an OpenAI chat-completions stream (server-sent events) into one response.
pub fn assemble_stream(text: &str) -> Result<Value, StreamError> {
    let mut content = String::new();
    let mut tool_calls: Vec<Value> = Vec::new();
    let mut finish = Value::Null;
    let mut usage = Value::Null;
    let mut any = false;
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data:").map(str::trim) else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(data).map_err(StreamError::BadChunk)?;
        // OpenAI-compatible servers (vLLM, llama.cpp) report a failure mid-stream as a chunk.
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            return Err(StreamError::Reported(error.to_string()));
        }
        any = true;
        if !chunk["usage"].is_null() {
            usage = chunk["usage"].clone();
        }
        let Some(choice) = chunk["choices"].get(0) else {
            continue;
        };
        if !choice["finish_reason"].is_null() {
            finish = choice["finish_reason"].clone();
        }
        let delta = &choice["delta"];
        if let Some(c) = delta["content"].as_str() {
            content.push_str(c);
        }
        for tc in delta["tool_calls"].as_array().into_iter().flatten() {
            let i = tc["index"].as_u64().unwrap_or(0) as usize;
            while tool_calls.len() <= i {
                tool_calls.push(json!({"id": "", "type": "function",
                    "function": {"name": "", "arguments": ""}}));
            }
            let slot = &mut tool_calls[i];
            if let Some(id) = tc["id"].as_str() {
                slot["id"] = json!(id);
            }
            if let Some(n) = tc["function"]["name"].as_str() {
                let name = format!("{}{n}", slot["function"]["name"].as_str().unwrap_or(""));
                slot["function"]["name"] = json!(name);
            }
            if let Some(a) = tc["function"]["arguments"].as_str() {
                let args = format!(
                    "{}{a}",
                    slot["function"]["arguments"].as_str().unwrap_or("")
                );
                slot["function"]["arguments"] = json!(args);
            }
        }
    }
    if !any {
        return Err(StreamError::NoChunks);
    }
    let mut message = json!({ "role": "assistant", "content": content });
    if !tool_calls.is_empty() {
        message["tool_calls"] = json!(tool_calls);
    }
    Ok(json!({
        "object": "chat.completion",
        "choices": [{ "index": 0, "message": message, "finish_reason": finish }],
        "usage": usage,
    }))
}

/// Assembles an Anthropic Messages stream (server-sent events) into one message. A tool call
/// whose streamed input is not valid JSON keeps it as a string (the brain reports it back).
pub fn assemble_anthropic_stream(text: &str) -> Result<Value, StreamError> {
    let mut message = Value::Null;
    let mut blocks: Vec<Value> = Vec::new();
    let mut partial: Vec<String> = Vec::new();
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data:").map(str::trim) else {
            continue;
        };
        let ev: Value = serde_json::from_str(data).map_err(StreamError::BadEvent)?;
        match ev["type"].as_str().unwrap_or("") {
            "message_start" => message = ev["message"].clone(),
            "content_block_start" => {
                let i = ev["index"].as_u64().unwrap_or(0) as usize;
                while blocks.len() <= i {
                    blocks.push(Value::Null);
                    partial.push(String::new());
                }
                blocks[i] = ev["content_block"].clone();
            }
            "content_block_delta" => {
                let i = ev["index"].as_u64().unwrap_or(0) as usize;
                let (Some(block), Some(acc)) = (blocks.get_mut(i), partial.get_mut(i)) else {
                    return Err(StreamError::DeltaBeforeStart);
                };
                let d = &ev["delta"];
                match d["type"].as_str().unwrap_or("") {
                    "text_delta" => {
                        let t = format!(
                            "{}{}",
                            block["text"].as_str().unwrap_or(""),
                            d["text"].as_str().unwrap_or("")
                        );
                        block["text"] = json!(t);
                    }
                    "input_json_delta" => acc.push_str(d["partial_json"].as_str().unwrap_or("")),
                    _ => {}
                }
            }
            "message_delta" => {
                if message.is_null() {
                    message = json!({});
                }
                if let Some(r) = ev["delta"]["stop_reason"].as_str() {
                    message["stop_reason"] = json!(r);
                }
                if let Some(o) = ev["usage"]["output_tokens"].as_u64() {
                    message["usage"]["output_tokens"] = json!(o);
                }
            }
            "error" => return Err(StreamError::Reported(ev["error"].to_string())),
            _ => {}
        }
    }
    if message.is_null() {
        return Err(StreamError::NoMessage);
    }
    for (block, raw) in blocks.iter_mut().zip(partial) {
        if block["type"] == "tool_use" && !raw.is_empty() {
            block["input"] = serde_json::from_str(&raw).unwrap_or(Value::String(raw));
        }
    }
    message["content"] = Value::Array(blocks);
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembles_a_streamed_tool_call() {
        let sse = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"read_\",\"arguments\":\"{\\\"a\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"notes\",\"arguments\":\"\\\":1}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7}}\n\n",
            "data: [DONE]\n\n",
        );
        let v = assemble_stream(sse).unwrap();
        let m = &v["choices"][0]["message"];
        assert_eq!(m["content"], "Hello");
        assert_eq!(m["tool_calls"][0]["id"], "c1");
        assert_eq!(m["tool_calls"][0]["function"]["name"], "read_notes");
        assert_eq!(m["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["usage"]["completion_tokens"], 7);
        assert!(assemble_stream("").is_err());
    }

    #[test]
    fn assembles_an_anthropic_stream() {
        let events = [
            json!({"type": "message_start", "message": {"role": "assistant", "content": [], "usage": {"input_tokens": 9, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me "}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "look."}}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t1", "name": "read_notes", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"a\""}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ": 1}"}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 12}}),
            json!({"type": "message_stop"}),
        ];
        let sse: String = events
            .iter()
            .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
            .collect();
        let m = assemble_anthropic_stream(&sse).unwrap();
        assert_eq!(m["content"][0]["text"], "Let me look.");
        assert_eq!(m["content"][1]["input"], json!({"a": 1}));
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(m["usage"]["output_tokens"], 12);
        assert_eq!(m["usage"]["input_tokens"], 9);
    }
}
