//! The core's replies to `!hive` commands, handed to the console action that sent the command.
//!
//! The console sends `!hive stop argus` as the operator and learns the command's event id from
//! the homeserver's answer; the control loop learns the same id from the transaction that
//! carries the command, and calls [`CommandReplies::replied`] where it posts its reply. The two
//! can arrive in either order: a reply nobody waits for yet is kept (the last [`KEEP`], each cut
//! to [`MAX_REPLY`] bytes) so a waiter that registers just after still finds it. A waiter that
//! gives up forgets its slot ([`CommandReplies::forget`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::oneshot;

/// Replies kept for a waiter that has not registered yet.
pub const KEEP: usize = 32;
/// The most of a reply kept or handed over (a toast, not the whole status table).
pub const MAX_REPLY: usize = 4000;

/// The core's reply to one `!hive` command: its text, and whether the command did what it
/// asked (`false`: refused, failed, or nothing to do, as the command itself knows, so the
/// console never guesses it from the wording).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub done: bool,
    pub text: String,
}

impl Reply {
    /// The command did what it asked; `text` says what.
    pub fn done(text: impl Into<String>) -> Self {
        Self {
            done: true,
            text: text.into(),
        }
    }

    /// The command did not do what it asked; `text` says why.
    pub fn not_done(text: impl Into<String>) -> Self {
        Self {
            done: false,
            text: text.into(),
        }
    }
}

/// Waiters for the core's reply to a command, keyed by the command's event id.
#[derive(Default)]
pub struct CommandReplies {
    inner: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    waiting: HashMap<String, oneshot::Sender<Reply>>,
    early: VecDeque<(String, Reply)>,
}

impl CommandReplies {
    /// The core posted `reply` to the command `event`: its waiter gets it, or it is kept for
    /// one that registers later.
    pub fn replied(&self, event: &str, reply: &Reply) {
        let reply = Reply {
            done: reply.done,
            text: cut(&reply.text, MAX_REPLY).to_owned(),
        };
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match s.waiting.remove(event) {
            // A waiter that gave up meanwhile dropped its receiver: nothing to tell.
            Some(tx) => drop(tx.send(reply)),
            None => {
                if s.early.len() >= KEEP {
                    s.early.pop_front();
                }
                s.early.push_back((event.to_owned(), reply));
            }
        }
    }

    /// Waits for the reply to command `event`: a receiver that completes when the core replies
    /// (at once if it already has).
    pub fn wait(&self, event: &str) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match s.early.iter().position(|(e, _)| e == event) {
            Some(i) => {
                let (_, reply) = s.early.remove(i).expect("the position was just found");
                // The receiver is returned below: it is alive.
                drop(tx.send(reply));
            }
            None => {
                s.waiting.insert(event.to_owned(), tx);
            }
        }
        rx
    }

    /// The waiter for `event` gave up: its slot is freed.
    pub fn forget(&self, event: &str) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        s.waiting.remove(event);
    }

    /// How many waiters are registered (tests).
    pub fn waiting(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .waiting
            .len()
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each order of reply and wait, and the bounds: what the waiter receives.
    #[test]
    fn a_reply_reaches_its_waiter_in_either_order() {
        enum Step {
            Replied(&'static str, &'static str),
            Wait(&'static str),
            Forget(&'static str),
        }
        struct Case {
            name: &'static str,
            steps: Vec<Step>,
            /// The event whose receiver is checked (the last `Wait` of it), and what it got.
            want: Option<&'static str>,
        }
        use Step::*;
        let cases = [
            Case {
                name: "reply after the wait",
                steps: vec![Wait("$a"), Replied("$a", "stopped argus")],
                want: Some("stopped argus"),
            },
            Case {
                name: "reply before the wait (the transaction won the race)",
                steps: vec![Replied("$a", "stopped argus"), Wait("$a")],
                want: Some("stopped argus"),
            },
            Case {
                name: "another command's reply is not ours",
                steps: vec![Wait("$a"), Replied("$b", "started echo")],
                want: None,
            },
            Case {
                name: "a forgotten waiter gets nothing, and the reply is kept",
                steps: vec![Wait("$a"), Forget("$a"), Replied("$a", "late"), Wait("$a")],
                want: Some("late"),
            },
        ];
        for c in cases {
            let r = CommandReplies::default();
            let mut last = None;
            for s in c.steps {
                match s {
                    Replied(e, t) => r.replied(e, &Reply::done(t)),
                    Wait(e) => last = Some(r.wait(e)),
                    Forget(e) => r.forget(e),
                }
            }
            let mut rx = last.expect("every case waits");
            assert_eq!(
                rx.try_recv().ok().map(|r| r.text).as_deref(),
                c.want,
                "{}",
                c.name
            );
        }
    }

    /// Only the last `KEEP` early replies are kept, each cut to `MAX_REPLY` bytes.
    #[test]
    fn early_replies_are_bounded() {
        let r = CommandReplies::default();
        for i in 0..=KEEP {
            r.replied(&format!("${i}"), &Reply::not_done("é".repeat(MAX_REPLY)));
        }
        assert!(r.wait("$0").try_recv().is_err(), "the oldest was dropped");
        let kept = r.wait("$1").try_recv().expect("a recent one is kept");
        assert!(!kept.done, "the outcome is kept with the text");
        let kept = kept.text;
        assert!(
            kept.len() <= MAX_REPLY && kept.len() >= MAX_REPLY - 1,
            "{}",
            kept.len()
        );
        assert_eq!(r.waiting(), 1, "only the unanswered wait is registered");
    }
}
