//! The core's own duties: start-up ping, heartbeat, timeline reconciliation, `!hive` commands
//! and notices to the operator.

use std::fmt::Write as _;
use std::time::Duration;

use ruma::api::Direction;
use ruma::api::client::appservice::request_ping;
use ruma::api::client::message::get_message_events;
use ruma::events::MessageLikeEventType;
use ruma::serde::Raw;
use ruma::{OwnedRoomId, OwnedTransactionId, RoomId, UInt};
use serde_json::json;

use super::routing::TimelineEvent;
use super::{CONTROL_QUEUE, Core};
use crate::agent_spec::AgentName;
use crate::store::{InboxItem, now_us};

/// A custom, invisible event the core sends itself through `#hive-c0re`.
pub const HEARTBEAT_TYPE: &str = "org.hyperhive.heartbeat";

/// How long a heartbeat may take to come back before the core reconciles timelines.
const HEARTBEAT_GRACE: Duration = Duration::from_secs(10);

/// Pages of history (100 events each) read per room when reconciling: 10,000 events. Beyond
/// that the operator is told that older events of the room were not read.
const RECONCILE_PAGES: usize = 100;

impl Core {
    /// Asks the homeserver to ping us now: transactions it queued while we were down are sent
    /// at once instead of after its backoff.
    pub async fn ping_homeserver(&self) -> anyhow::Result<()> {
        let req = request_ping::v1::Request::new(self.cfg().appservice_id.clone());
        let resp = self.client().send(req, None).await?;
        tracing::info!(
            round_trip_ms = resp.duration.as_millis() as u64,
            "homeserver reached the appservice"
        );
        Ok(())
    }

    /// Periodic heartbeat through `#hive-c0re`. When it does not come back in a transaction
    /// within the grace period, the homeserver is holding events back: reconcile timelines.
    pub async fn heartbeat_loop(self) {
        let every = Duration::from_secs(self.cfg().heartbeat_secs);
        loop {
            tokio::select! {
                _ = self.cancel().cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let Some(room) = self.room(&super::rooms::RoomKey::Control) else {
                continue;
            };
            let arrived = self.inner.heartbeat.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let txn = format!("hh-heartbeat-{}", now_us());
            let req = ruma::api::client::message::send_message_event::v3::Request::new_raw(
                room,
                OwnedTransactionId::from(txn),
                MessageLikeEventType::from(HEARTBEAT_TYPE),
                Raw::from_json(
                    serde_json::value::to_raw_value(&json!({ "ts": now_us() / 1000 }))
                        .expect("json serialises"),
                ),
            );
            if let Err(e) = self.client().send(req, None).await {
                tracing::warn!(error = %e, "heartbeat could not be sent");
                continue;
            }
            tokio::select! {
                _ = self.cancel().cancelled() => return,
                _ = &mut arrived => {}
                _ = tokio::time::sleep(HEARTBEAT_GRACE) => {
                    tracing::warn!("heartbeat did not come back; reconciling timelines");
                    if let Err(e) = self.reconcile().await {
                        tracing::warn!(error = %format!("{e:#}"), "reconciliation failed");
                    }
                }
            }
        }
    }

    /// Reads recent history of every hive room and accepts what the homeserver has but the core
    /// never received. Only events since the hive first started are considered.
    pub async fn reconcile(&self) -> anyhow::Result<usize> {
        let since_ms: i64 = match self.store().meta("since_ms")? {
            Some(v) => v.parse()?,
            None => {
                let now = now_us() / 1000;
                self.store().set_meta("since_ms", &now.to_string())?;
                now
            }
        };
        // Event ids older than the retention are forgotten (`prune`): never take such an event
        // for one the core missed.
        let since_ms = since_ms.max(self.retention_horizon_us() / 1000);
        let mut accepted = 0;
        let rooms: Vec<OwnedRoomId> = self.rooms().all().cloned().collect();
        for room in rooms {
            let mut missing = Vec::new();
            let mut from: Option<String> = None;
            let mut complete = false;
            'pages: for _ in 0..RECONCILE_PAGES {
                let mut req =
                    get_message_events::v3::Request::new(room.clone(), Direction::Backward);
                req.from = from.clone();
                req.limit = UInt::from(100u32);
                let resp = self.client().send(req, None).await?;
                for raw in &resp.chunk {
                    let Ok(ev) = raw.deserialize_as_unchecked::<TimelineEvent>() else {
                        continue;
                    };
                    if ev.origin_server_ts < since_ms || self.store().seen(&ev.event_id)? {
                        complete = true;
                        break 'pages;
                    }
                    missing.push(ev);
                }
                match resp.end {
                    Some(end) if !resp.chunk.is_empty() => from = Some(end),
                    _ => {
                        complete = true;
                        break;
                    }
                }
            }
            if !complete {
                tracing::error!(room = %room, read = missing.len(), "reconcile stopped before reaching known history");
                self.notice(
                    None,
                    &format!(
                        "⚠️ Catching up on {room} after an outage, I read the newest {} events the homeserver had not pushed and stopped there: older ones in that room were not delivered.",
                        missing.len()
                    ),
                )
                .await;
            }
            if !missing.is_empty() {
                missing.reverse();
                tracing::warn!(room = %room, events = missing.len(), "accepting events the homeserver never pushed");
                accepted += missing.len();
                self.accept(&missing, now_us())?;
            }
        }
        Ok(accepted)
    }

    /// Before this, the core keeps nothing it no longer needs (`delivery.retention_days`, less a
    /// day of margin for reconciliation).
    fn retention_horizon_us(&self) -> i64 {
        let days = i64::from(self.cfg().retention_days.saturating_sub(1));
        now_us() - days * 86_400_000_000
    }

    /// Prunes the store at start and every six hours.
    pub async fn prune_loop(self) {
        loop {
            let before = now_us() - i64::from(self.cfg().retention_days) * 86_400_000_000;
            match self.store().prune(before) {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "pruned what the core no longer needs"),
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "pruning the store failed"),
            }
            tokio::select! {
                _ = self.cancel().cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(6 * 3600)) => {}
            }
        }
    }

    /// Serves `!hive …` commands from the control queue, one at a time, exactly once.
    pub async fn control_loop(self) {
        loop {
            let (item, _) = match self
                .store()
                .take_next(CONTROL_QUEUE, self.cfg().max_attempts)
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "control queue unreadable");
                    (None, Vec::new())
                }
            };
            let Some(item) = item else {
                tokio::select! {
                    _ = self.cancel().cancelled() => return,
                    _ = self.inner.control_notify.notified() => continue,
                }
            };
            let command = item
                .body
                .trim()
                .strip_prefix("!hive")
                .unwrap_or("")
                .trim()
                .to_owned();
            let answer = self.run_command(&command);
            let room = RoomId::parse(&item.room_id).ok();
            self.notice(room, &answer).await;
            if let Err(e) = self.store().ack(item.id) {
                tracing::error!(error = %format!("{e:#}"), "could not ack a control command");
            }
        }
    }

    fn run_command(&self, command: &str) -> String {
        match command.split_whitespace().next().unwrap_or("help") {
            "status" => self
                .status_text()
                .unwrap_or_else(|e| format!("status unavailable: {e:#}")),
            "help" | "" => "Commands: `!hive status` (agents, queues), `!hive help`.".into(),
            other => format!("Unknown command `{other}`. `!hive help` lists commands."),
        }
    }

    /// A Markdown status table of every agent.
    pub fn status_text(&self) -> anyhow::Result<String> {
        let states: std::collections::HashMap<String, String> = self
            .store()
            .agent_states()?
            .into_iter()
            .map(|(n, s, _)| (n, s))
            .collect();
        let mut out = String::from(
            "| agent | brain | state | queued | done | dead |\n|---|---|---|---|---|---|\n",
        );
        for (name, entry) in self.agents() {
            let c = self.store().counts(name.as_str())?;
            let state = states.get(name.as_str()).map_or("unknown", String::as_str);
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                name,
                entry.spec().brain.kind(),
                state,
                c.pending + c.inflight,
                c.done,
                c.dead
            )?;
        }
        Ok(out)
    }

    /// Tells the operator a message was dead-lettered.
    pub async fn dead_letter_notice(&self, item: &InboxItem) {
        tracing::warn!(agent = %item.agent, event_id = %item.event_id, attempts = item.attempts, "message dead-lettered");
        let text = format!(
            "☠️ dead letter: message {} from {} to **{}** was given up after {} deliveries. It stays in the queue database for inspection.",
            item.event_id, item.sender, item.agent, item.attempts
        );
        self.notice(None, &text).await;
    }

    /// Posts `text` as the agent itself (so it appears in its own voice in its room); falls back
    /// to a notice from the core.
    pub async fn post_as_agent_or_notice(
        &self,
        name: &AgentName,
        room: Option<OwnedRoomId>,
        text: &str,
    ) {
        let (Some(room), Some(entry)) = (room.clone(), self.agent(name)) else {
            return self.notice(room, text).await;
        };
        let content = super::outbound::message_content(text, None, None, true);
        let txn = format!(
            "hh-{name}-n{}",
            crate::c0re::registration::random_secret(12)
        );
        if let Err(e) = self
            .send_raw(&room, Some(&entry.user_id), &txn, &content)
            .await
        {
            tracing::warn!(error = %format!("{e:#}"), "could not post as agent; posting as the core");
            self.notice(Some(room), text).await;
        }
    }
}

impl Core {
    /// An agent's process exited unexpectedly: a `container_crash` for each manager, and a
    /// line in `#hive-c0re`.
    pub async fn report_crash(&self, agent: &AgentName, status: &str, last_lines: &str) {
        let sha = crate::configrepo::ConfigRepo::new(self.data_dir(), agent)
            .current()
            .map(|(_, sha)| sha)
            .unwrap_or_default();
        let text = format!(
            "container_crash: **{agent}** exited ({status}) on config `{sha}`. Last log lines:\n```\n{last_lines}\n```"
        );
        let id = crate::c0re::registration::random_secret(12);
        let mut owed = false;
        for m in &self.cfg().managers {
            if m == agent {
                continue;
            }
            let Some(post) = self.core_event(
                m.as_str(),
                "container_crash",
                &text,
                json!({ "agent": agent.as_str(), "status": status, "sha": sha, "last_lines": last_lines }),
                &format!("hh-event-crash-{m}-{id}"),
            ) else {
                continue;
            };
            match self.store().enqueue_post(&post) {
                Ok(()) => owed = true,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), manager = %m, "could not record a crash report")
                }
            }
        }
        if owed {
            self.wake_outbox();
        }
    }
}

/// The core's control socket for the local `hive` CLI: `<data>/run/c0re.ctl`, mode 0600 in a
/// private directory (only the hive's own user reaches it). One line in, one line out; the only
/// request is `wake` (the CLI filed an approval request in the database: post it now).
pub fn control_socket_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("run").join("c0re.ctl")
}

impl Core {
    pub async fn serve_control_socket(self) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let path = control_socket_path(self.data_dir());
        if let Some(dir) = path.parent() {
            crate::fsutil::private_dir(dir)?;
        }
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        loop {
            let (stream, _) = tokio::select! {
                _ = self.cancel().cancelled() => break,
                r = listener.accept() => match r {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "control socket accept failed");
                        continue;
                    }
                },
            };
            let core = self.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut line = String::new();
                let mut reader = tokio::io::BufReader::new(r.take(1024));
                if reader.read_line(&mut line).await.is_ok() {
                    let answer = match line.trim() {
                        "wake" => {
                            core.wake_approvals();
                            "ok\n"
                        }
                        _ => "error: unknown request\n",
                    };
                    let _ = w.write_all(answer.as_bytes()).await;
                }
            });
        }
        let _ = std::fs::remove_file(&path);
        Ok(())
    }
}

/// Tells a running core to look at the database (`hive config propose`). False if none runs.
pub fn wake_running_core(data_dir: &std::path::Path) -> bool {
    use std::io::{BufRead, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(control_socket_path(data_dir)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"wake\n").is_err() {
        return false;
    }
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).is_ok() && line.trim() == "ok"
}
