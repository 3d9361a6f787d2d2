//! Reading a provider's answer: capped as it arrives, and for a streamed call passed on event by
//! event as it comes.

use super::{CallError, SseSplitter};

/// Reads a response body chunk by chunk, refusing it as soon as it passes `max` bytes (a
/// declared length over `max` is refused before reading).
pub(super) async fn read_capped(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, CallError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(CallError::TooLarge(max));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(CallError::Reading)? {
        if bytes.len() + chunk.len() > max {
            return Err(CallError::TooLarge(max));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// A streamed read that failed, with what had been passed on before it did.
pub(super) struct Cut {
    pub(super) error: CallError,
    /// The events passed on (each followed by its blank line), to be charged.
    pub(super) passed: String,
}

/// Reads a streamed body like [`read_capped`], passing each whole server-sent event to `tx` as
/// soon as its blank line arrives ([`SseSplitter`]); the whole text, for assembly. A harness
/// that went away (`tx` closed) does not stop the read: the call is still recorded.
pub(super) async fn read_forwarding(
    mut resp: reqwest::Response,
    max: usize,
    tx: &tokio::sync::mpsc::UnboundedSender<String>,
) -> Result<String, Box<Cut>> {
    let cut = |error, passed| Box::new(Cut { error, passed });
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(cut(CallError::TooLarge(max), String::new()));
    }
    let mut splitter = SseSplitter::default();
    let mut text = String::new();
    let mut read = 0;
    let pass = |events: Vec<String>, text: &mut String| {
        for ev in events {
            text.push_str(&ev);
            text.push_str("\n\n");
            // A closed channel: the harness left; the answer is still read and recorded.
            if tx.send(ev).is_err() {
                tracing::debug!("a streamed model answer's reader went away");
            }
        }
    };
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => return Err(cut(CallError::Reading(e), text)),
        };
        read += chunk.len();
        if read > max {
            return Err(cut(CallError::TooLarge(max), text));
        }
        pass(splitter.push(&chunk), &mut text);
    }
    pass(splitter.finish().into_iter().collect(), &mut text);
    Ok(text)
}
