//! Between two requests of a harness: waiting for its next message while watching the
//! connection, and putting a message back when its turn ends without an ack.

use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::agent_spec::AgentName;
use crate::c0re::Core;

/// What ended a wait for the agent's next message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wake {
    /// The agent's queue got a message.
    Notified,
    /// The core is shutting down.
    Stopping,
    /// The harness hung up.
    HungUp,
    /// The harness sent something while it should wait (one request at a time).
    SpokeOutOfTurn,
}

/// Waits for `notify` (none: only for the rest), shutdown or the harness. The harness sends
/// nothing while it waits: readable means it hung up, or broke the one-request rule.
pub(super) async fn wait(
    reader: &mut (impl AsyncBufRead + Unpin),
    cancel: &CancellationToken,
    notify: Option<&Notify>,
) -> Wake {
    let notified = async {
        match notify {
            Some(n) => n.notified().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = notified => Wake::Notified,
        _ = cancel.cancelled() => Wake::Stopping,
        r = reader.fill_buf() => match r {
            Ok([]) | Err(_) => Wake::HungUp,
            Ok(_) => Wake::SpokeOutOfTurn,
        },
    }
}

/// Puts a message back in its queue, retrying while the store fails (it must not stay in
/// flight: nothing would deliver it until a restart).
pub(super) async fn release_until_done(core: &Core, name: &AgentName, id: i64) {
    let mut delay = Duration::from_millis(100);
    loop {
        match core.store().release(id) {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(agent = %name, id, error = %format!("{e:#}"), "cannot put a message back; retrying");
                tokio::select! {
                    // At the next start every in-flight message is put back anyway.
                    _ = core.cancel().cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    #[tokio::test]
    async fn a_wait_ends_on_what_happens_first() {
        let cancel = CancellationToken::new();
        let notify = Notify::new();
        // A harness that hung up: end of stream.
        let mut gone: &[u8] = &[];
        assert_eq!(wait(&mut gone, &cancel, Some(&notify)).await, Wake::HungUp);
        // A harness that sent a request while it should wait.
        let mut eager: &[u8] = b"{}";
        assert_eq!(wait(&mut eager, &cancel, None).await, Wake::SpokeOutOfTurn);
        // A message arrived (the harness is quiet: a reader that never becomes readable).
        let (mut quiet, _keep) = tokio::io::duplex(64);
        let mut quiet = BufReader::new(&mut quiet);
        notify.notify_one();
        assert_eq!(
            wait(&mut quiet, &cancel, Some(&notify)).await,
            Wake::Notified
        );
        cancel.cancel();
        assert_eq!(wait(&mut quiet, &cancel, None).await, Wake::Stopping);
    }
}
