//! `model_stream`: a model call whose answer the harness gets as it arrives. The core's call
//! ([`Core::model_call_streamed`](crate::c0re::Core::model_call_streamed)) hands each
//! server-sent event over a channel; this writes them to the socket as `model_chunk` lines
//! while the call runs, then the call's last answer is written by the socket loop.

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{MODEL_OUTSIDE_TURN, Session, bad_request};
use crate::wire::protocol::Response;

impl Session {
    /// Runs the streamed call for the turn in flight, writing its chunks to `w` in order as they
    /// come; the answer to write last (`model_response`, or the error). A harness that goes
    /// away mid-stream does not cut the call short: it is read to its end and recorded, then
    /// the broken write is the error.
    pub(in crate::c0re::agents) async fn model_stream(
        &self,
        request: &serde_json::Value,
        w: &mut (impl AsyncWrite + Unpin),
    ) -> anyhow::Result<Response> {
        let Some(inbox_id) = self.in_flight() else {
            return Ok(bad_request(MODEL_OUTSIDE_TURN)
                .response()
                .expect("a refusal has a response"));
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let call = self
            .core
            .model_call_streamed(&self.name, inbox_id, request, &tx);
        tokio::pin!(call);
        let mut broken: Option<std::io::Error> = None;
        let result = loop {
            tokio::select! {
                // Chunks first: none is left behind the answer.
                biased;
                Some(event) = rx.recv() => write_chunk(w, event, &mut broken).await,
                r = &mut call => break r,
            }
        };
        while let Ok(event) = rx.try_recv() {
            write_chunk(w, event, &mut broken).await;
        }
        if let Some(e) = broken {
            return Err(anyhow::Error::new(e).context("the harness went away mid-stream"));
        }
        Ok(match result {
            Ok(body) => Response::ModelResponse { body },
            Err(r) => Response::Error {
                code: r.code,
                message: r.message,
            },
        })
    }
}

/// How long one chunk may wait for the harness to read it. A harness that stays connected but
/// stops reading would otherwise hold the provider's call (not polled while a write waits) and
/// the session for ever; past this it counts as gone, and the call is read to its end.
const CHUNK_WRITE: std::time::Duration = std::time::Duration::from_secs(10);

/// Writes one chunk unless the socket broke already (then the chunk is dropped).
async fn write_chunk(
    w: &mut (impl AsyncWrite + Unpin),
    event: String,
    broken: &mut Option<std::io::Error>,
) {
    if broken.is_some() {
        return;
    }
    let mut line =
        serde_json::to_vec(&Response::ModelChunk { event }).expect("a response serializes");
    line.push(b'\n');
    match tokio::time::timeout(CHUNK_WRITE, w.write_all(&line)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => *broken = Some(e),
        Err(_) => {
            *broken = Some(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the harness read no chunk for {CHUNK_WRITE:?}"),
            ))
        }
    }
}
