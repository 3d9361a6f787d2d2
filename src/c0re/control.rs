//! The core's own duties: start-up ping, heartbeat, timeline reconciliation, `!hive` commands,
//! pruning, notices to the operator and the local control socket.
//!
//! - [`commands`]: the `!hive …` command enum, parsed once (pure; its doc comments the help).
//! - [`console`]: what the operator's commands read and how their answers are rendered.
//! - [`heartbeat`]: the heartbeat loop; whether a beat means the homeserver holds events back.
//! - [`reconcile`]: reading timelines after downtime; the horizon and the missing events.

pub mod commands;
pub mod console;
pub mod heartbeat;
pub mod reconcile;

pub use heartbeat::HEARTBEAT_TYPE;

/// What wakes the control side: a `!hive` command queued, a heartbeat come back.
#[derive(Default)]
pub struct Control {
    commands: tokio::sync::Notify,
    heartbeat: tokio::sync::Notify,
    /// The console's actions waiting for the reply to a `!hive` command they sent.
    replies: super::web::actions::replies::CommandReplies,
}

impl Control {
    /// A `!hive` command was queued.
    pub fn command_queued(&self) {
        self.commands.notify_one();
    }

    /// The core's own heartbeat came back from the homeserver.
    pub fn heartbeat_seen(&self) {
        self.heartbeat.notify_waiters();
    }

    /// The core's replies to `!hive` commands, by the command's event id (the web console
    /// waits on them, `web/actions/replies.rs`).
    pub fn replies(&self) -> &super::web::actions::replies::CommandReplies {
        &self.replies
    }
}

use std::fmt::Write as _;
use std::time::Duration;

use ruma::api::client::appservice::request_ping;
use ruma::{OwnedRoomId, RoomId, UserId};

use super::routing::{self, CommandRight};
use super::web::actions::replies::Reply;
use super::{CONTROL_QUEUE, Core};
use crate::agent_spec::AgentName;
use crate::store::now_us;
use commands::HiveCommand;

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

    /// Prunes the store at start and every six hours.
    pub async fn prune_loop(self) {
        loop {
            let before = now_us() - i64::from(self.cfg().retention_days) * 86_400_000_000;
            let pruned = self.store().prune(before).and_then(|n| {
                // Forge deliveries the `forge` task has done with (issue 17).
                Ok(n + self.store().prune_forge_deliveries(before)?)
            });
            match pruned {
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
        // A run before this one (which panicked) may have left its command in flight: nothing
        // else would ever answer it. Only one control loop runs at a time.
        if let Err(e) = self.store().release_inflight(CONTROL_QUEUE) {
            tracing::error!(error = %format!("{e:#}"), "could not put back an interrupted command");
        }
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
                    _ = self.control().commands.notified() => continue,
                }
            };
            // An operator's command in an agent's inbox (`!cancel`, `!model`): answered there.
            if let Some(answer) = self.inbox_command(&item).await {
                self.notice(RoomId::parse(&item.room_id).ok(), &answer)
                    .await;
                if let Err(e) = self.store().ack(item.id) {
                    tracing::error!(error = %format!("{e:#}"), "could not ack an inbox command");
                }
                continue;
            }
            // The body was recognised as a command by `routing::control_command`; the words
            // after `!hive` are parsed here, once, if its sender may give commands.
            let sender = UserId::parse(&item.sender).ok();
            let right = sender
                .as_deref()
                .map(|u| self.sender_kind(u))
                .and_then(|k| routing::command_right(&k));
            let answer = match (right, &sender) {
                (Some(CommandRight::Obey), Some(operator)) => {
                    let args = routing::command_args(&item.body).unwrap_or("");
                    Some(match commands::parse(args) {
                        Ok(command) => {
                            if command == HiveCommand::Status {
                                // Each peer's reachability as of now, not of the last probe.
                                self.probe_peers().await;
                            }
                            self.run_command(&command, operator, &item).await
                        }
                        Err(usage) => Reply::not_done(usage.to_string()),
                    })
                }
                (Some(_), _) => {
                    // Refused, and on the record: who tried to command the hive, and what.
                    let args = routing::command_args(&item.body).unwrap_or("");
                    self.audit_by(&item.sender, "!hive", None, None, "refused", Some(args));
                    Some(Reply::not_done(format!(
                        "only the hive's operators may give `!hive` commands (`operators` in hive.toml); {} is not one",
                        item.sender
                    )))
                }
                // The core's own message: never answered (nothing loops).
                (None, _) => None,
            };
            if let Some(answer) = answer {
                let room = RoomId::parse(&item.room_id).ok();
                let answer = Reply {
                    text: console::fit(&answer.text, console::MAX_CONTENT),
                    ..answer
                };
                self.control().replies.replied(&item.event_id, &answer);
                self.notice(room, &answer.text).await;
            }
            if let Err(e) = self.store().ack(item.id) {
                tracing::error!(error = %format!("{e:#}"), "could not ack a control command");
            }
        }
    }

    /// The answer to one command from `operator` (`item`: the queued command event), and
    /// whether it did what it asked (a report that could not be read did not).
    async fn run_command(
        &self,
        command: &HiveCommand,
        operator: &UserId,
        item: &crate::store::InboxItem,
    ) -> Reply {
        use super::agents::lifecycle::Action;
        let read = |what: &str, text: anyhow::Result<String>| match text {
            Ok(text) => Reply::done(text),
            Err(e) => Reply::not_done(self.shown(&format!("{what} unavailable: {e:#}"))),
        };
        match command {
            HiveCommand::Status => read("status", self.status_text()),
            HiveCommand::Agents => read("agents", self.agents_text()),
            HiveCommand::Logs { agent, lines } => Reply::done(self.logs_text(agent, *lines)),
            HiveCommand::Stop { agent } => {
                self.operator_lifecycle(operator, Action::Stop, agent).await
            }
            HiveCommand::Start { agent } => {
                self.operator_lifecycle(operator, Action::Start, agent)
                    .await
            }
            HiveCommand::Restart { agent } => {
                self.operator_lifecycle(operator, Action::Restart, agent)
                    .await
            }
            HiveCommand::Notes { agent } => read("notes", self.notes_text(agent)),
            HiveCommand::Usage { agent } => read("usage", self.usage_text(agent.as_deref())),
            HiveCommand::Approvals => read("approvals", self.approvals_text()),
            HiveCommand::Audit { rows } => read("audit", self.audit_text(*rows)),
            HiveCommand::Help => Reply::done(commands::help_text()),
            HiveCommand::Cancel { agent } => {
                self.cancel_command(agent, operator.as_str(), item, true)
                    .await
            }
            HiveCommand::Schedules => read("schedules", self.schedules_text()),
            HiveCommand::Fire { agent, schedule } => {
                self.fire_command(agent, schedule, operator.as_str(), &item.event_id)
            }
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
        for (name, entry) in self.agents().all() {
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
        let peers = self.peer_statuses()?;
        if !peers.is_empty() {
            out.push_str("\n**Peers**\n");
            for line in super::peering::status::lines(&peers, crate::store::now_us(), true) {
                writeln!(out, "- {line}")?;
            }
        }
        Ok(out)
    }

    /// Posts `text` as the agent itself (so it appears in its own voice in its room); falls back
    /// to a notice from the core.
    pub async fn post_as_agent_or_notice(
        &self,
        name: &AgentName,
        room: Option<OwnedRoomId>,
        text: &str,
    ) {
        let (Some(room), Some(entry)) = (room.clone(), self.agents().get(name)) else {
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

/// The core's control socket for the local `hive` CLI: `<data>/run/c0re.ctl`, mode 0600 in a
/// private directory (only the hive's own user reaches it). One line in, one line out; the
/// requests are `wake` (the CLI filed an approval request in the database: post it now) and
/// `console-link` (`hive console`: answered `ok <a fresh login link>`).
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
        remove_stale_socket(&path);
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
                            "ok\n".to_owned()
                        }
                        // `hive console`: a fresh login link (the answer holds its token).
                        "console-link" => match core.web().login_link() {
                            Ok(url) => format!("ok {url}\n"),
                            Err(e) => format!("error: {e}\n"),
                        },
                        _ => "error: unknown request\n".to_owned(),
                    };
                    if let Err(e) = w.write_all(answer.as_bytes()).await {
                        tracing::debug!(error = %e, "the control socket's client left before its answer");
                    }
                }
            });
        }
        remove_stale_socket(&path);
        Ok(())
    }
}

/// Removes the control socket a previous run left behind (or this run's, at shutdown).
fn remove_stale_socket(path: &std::path::Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove the control socket");
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
