//! `hive up`: the whole hive in the foreground.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::cli::HiveDirs;
use crate::config::Config;
use crate::homeserver::{self, Layout, Synapse};

pub async fn run(config_path: Option<PathBuf>, dirs: HiveDirs) -> anyhow::Result<ExitCode> {
    let mut cfg = Config::load(config_path.as_deref())?;
    crate::config::check_transport(&cfg)?;
    let specs = super::load_bots(&dirs.bots)?;
    let registration = super::c0re::prepare_data_dir(&cfg, &dirs.data_dir)?;
    let cancel = super::shutdown_token()?;
    // The Claude Code CLI installs while Synapse does (both take a while the first time).
    let mut claude_code = AbortOnDrop(tokio::spawn(claude_code_cli(
        dirs.data_dir.clone(),
        crate::install::claude_code_agents(&specs),
    )));

    // Stopped after the core (below), not with it.
    let synapse_stop = CancellationToken::new();
    let synapse_task = if cfg.embedded {
        let layout = Layout::new(&dirs.data_dir);
        homeserver::ensure_installed(&layout).await?;
        let configs = homeserver::render_config(
            &layout,
            &cfg,
            &registration,
            extra_config(&dirs.data_dir)?.as_deref(),
        )?;
        eprintln!("hive: starting Synapse ({})…", cfg.homeserver_url);
        let synapse = Synapse::start(&layout, &configs, &cfg.homeserver_url).await?;
        write_pid(&dirs.data_dir, "synapse", synapse.pid());
        let creds = homeserver::ensure_operator(&dirs.data_dir, &layout, &cfg).await?;
        eprintln!(
            "hive: homeserver ready. Log in from any Matrix client:\n        homeserver  {}\n        user        {}\n        password    in {} (mode 0600)",
            creds.homeserver,
            creds.user_id,
            homeserver::OperatorCredentials::path(&dirs.data_dir).display()
        );
        Some(tokio::spawn(supervise_synapse(
            synapse,
            layout,
            configs,
            cfg.homeserver_url.clone(),
            dirs.data_dir.clone(),
            synapse_stop.clone(),
        )))
    } else {
        eprintln!(
            "hive: using the homeserver at {}. Its configuration must list {} in app_service_config_files.",
            cfg.homeserver_url,
            registration.display()
        );
        None
    };

    if !claude_code.0.is_finished() {
        eprintln!("hive: the agents start once Claude Code is installed…");
    }
    let claude_code = tokio::select! {
        r = &mut claude_code.0 => r.context("the Claude Code install task failed")?,
        _ = cancel.cancelled() => None,
    };
    // The installed CLI goes to the runtimes (the operator's own HYPERHIVE_CLAUDE_CODE wins).
    if let Some(cli) = &claude_code {
        tracing::info!(cli = %cli.display(), "Claude Code CLI for the claude-code agents");
    }
    cfg.claude_code = cfg.claude_code.take().or(claude_code);
    let result = super::c0re::serve(cfg, &dirs.data_dir, specs, cancel.clone()).await;
    cancel.cancel();
    // Synapse last: the core's last posts and its agents' goodbyes go out while it still runs.
    synapse_stop.cancel();
    if let Some(t) = synapse_task {
        let _ = t.await;
    }
    let _ = std::fs::remove_file(super::pid_file(&dirs.data_dir, "synapse"));
    result?;
    eprintln!("hive: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Aborts the task when dropped (an early return must not leave an install running).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Whether `hive up` installs the pinned CLI: some agent uses it and the operator named none of
/// their own (`HYPERHIVE_CLAUDE_CODE`, which the runtimes pass on as it is).
fn wants_pinned_cli(agents: &[String], operators_cli: bool) -> bool {
    !agents.is_empty() && !operators_cli
}

/// The pinned Claude Code CLI for `agents`, installed into the data dir if need be. Never
/// fails the hive: without it those agents say in their rooms that they cannot think, and this
/// says why on stderr.
async fn claude_code_cli(data_dir: PathBuf, agents: Vec<String>) -> Option<PathBuf> {
    let operators_cli = std::env::var_os(crate::brain::claude_code::CLI_ENV).is_some();
    if !wants_pinned_cli(&agents, operators_cli) {
        return None;
    }
    let who = agents.join(", ");
    match crate::install::ensure_claude_code(&data_dir).await {
        Ok(Some(cli)) => Some(cli),
        Ok(None) => {
            eprintln!(
                "hive: npm not found: {who} cannot run Claude Code; install Node.js/npm or set {}",
                crate::brain::claude_code::CLI_ENV
            );
            None
        }
        Err(e) => {
            eprintln!(
                "hive: cannot install Claude Code {}: {e:#}\nhive: {who} cannot run Claude Code until it is installed (the next `hive up` tries again) or {} is set",
                crate::brain::claude_code::CLI_VERSION,
                crate::brain::claude_code::CLI_ENV
            );
            None
        }
    }
}

/// `<data>/synapse-extra.yaml`, if the operator wrote one, is loaded after the rendered config.
fn extra_config(data_dir: &Path) -> anyhow::Result<Option<String>> {
    let p = data_dir.join("synapse-extra.yaml");
    match std::fs::read_to_string(&p) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::from(e).context(format!("cannot read {}", p.display()))),
    }
}

fn write_pid(data_dir: &Path, what: &str, pid: Option<u32>) {
    if let Some(pid) = pid
        && let Err(e) = crate::fsutil::write_atomic(
            &super::pid_file(data_dir, what),
            pid.to_string().as_bytes(),
            0o644,
        )
    {
        tracing::warn!(error = %format!("{e:#}"), "could not write pid file");
    }
}

/// Keeps Synapse running until shutdown; stops it last.
async fn supervise_synapse(
    mut synapse: Synapse,
    layout: Layout,
    configs: Vec<PathBuf>,
    url: url::Url,
    data_dir: PathBuf,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                eprintln!("hive: stopping Synapse…");
                synapse.stop().await;
                return;
            }
            status = synapse.wait() => {
                tracing::error!(status = ?status, log = %layout.log().display(), "Synapse exited; restarting");
            }
        }
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            match Synapse::start(&layout, &configs, &url).await {
                Ok(s) => {
                    write_pid(&data_dir, "synapse", s.pid());
                    synapse = s;
                    backoff = Duration::from_secs(1);
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "Synapse restart failed");
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_cli_is_installed_only_when_needed() {
        let some = ["hm1nd".to_owned()];
        for (agents, operators_cli, want) in [
            (&some[..], false, true),
            (&some[..], true, false),
            (&[][..], false, false),
            (&[][..], true, false),
        ] {
            assert_eq!(
                wants_pinned_cli(agents, operators_cli),
                want,
                "{agents:?} operators_cli={operators_cli}"
            );
        }
    }
}
