//! The forge lanes (docs/forge.md): webhooks in, one room per repository and one thread per
//! pull request or issue, routing as data, and the forge tools the core runs with the token it
//! holds.
//!
//! - `ingress.rs`: `POST /_hyperhive/forge/<server>` on the appservice endpoint: the body
//!   capped and read first, the signature checked, the delivery recorded once (replays
//!   dropped) with its typed event, the `forge` task woken.
//! - `route.rs`: whose lane an item is (`[[forge.routes]]`), pure, and who is told.
//! - `rooms.rs`, `thread.rs`: `#forge-<owner>-<repo>` and each item's thread.
//! - `task.rs`: the `forge` task: each recorded delivery posted in its thread and handed to
//!   the agents' inboxes as a core event, once.
//! - `tools.rs`: `forge_*` tools, under the agent's `[[forge.grant]]`, rate-limited, audited,
//!   through the secret filter.

mod clients;
pub(super) mod ingress;
mod rooms;
mod route;
mod task;
mod thread;
pub(crate) mod tools;

use tokio::sync::Notify;

/// What the forge lanes own: what wakes the `forge` task.
#[derive(Debug)]
pub struct Forge {
    /// Notified when a delivery is recorded.
    pub wake: Notify,
    /// The HTTP client of every forge call, made on first use (`clients.rs`).
    http: std::sync::OnceLock<reqwest::Client>,
    /// The webhook requests in flight, at most [`ingress::IN_FLIGHT`] (`ingress.rs`).
    webhook_slots: tokio::sync::Semaphore,
    /// The webhook's refusals before a signature holds, counted to be logged at most once a
    /// minute per server (`ingress.rs`).
    refusals: std::sync::Mutex<ingress::Refusals>,
    /// What the `forge` task keeps between rounds (`task.rs`): each server's login as learnt
    /// from the forge, and each delivery's failed attempts.
    lanes: std::sync::Mutex<task::Lanes>,
}

impl Default for Forge {
    fn default() -> Self {
        Self {
            wake: Notify::new(),
            http: std::sync::OnceLock::new(),
            webhook_slots: tokio::sync::Semaphore::new(ingress::IN_FLIGHT),
            refusals: std::sync::Mutex::default(),
            lanes: std::sync::Mutex::default(),
        }
    }
}
