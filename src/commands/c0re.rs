//! `hive c0re`: the appservice and the agents, against a running homeserver.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::agent_spec::AgentSpec;
use crate::c0re::{Core, registration};
use crate::cli::HiveDirs;
use crate::config::{Config, RuntimeKind};

pub async fn run(config_path: Option<PathBuf>, dirs: HiveDirs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config_path.as_deref())?;
    crate::config::check_transport(&cfg)?;
    let specs = super::load_bots(&dirs.bots)?;
    prepare_data_dir(&cfg, &dirs.data_dir)?;
    let cancel = super::shutdown_token()?;
    serve(cfg, &dirs.data_dir, specs, cancel).await?;
    Ok(ExitCode::SUCCESS)
}

/// Creates the data dir, the tokens (once) and the registration file. Returns the registration.
pub fn prepare_data_dir(cfg: &Config, data_dir: &Path) -> anyhow::Result<PathBuf> {
    crate::fsutil::private_dir(data_dir)?;
    let tokens = registration::Tokens::load_or_create(data_dir)?;
    registration::write(cfg, &tokens, data_dir)
}

/// Runs hive-c0re until `cancel` fires: HTTP endpoint, rooms, sockets, heartbeat, agents.
pub async fn serve(
    cfg: Config,
    data_dir: &Path,
    specs: Vec<AgentSpec>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let runtime = cfg.runtime;
    let listen = cfg.listen;
    let (specs, drift) = {
        let data_dir = data_dir.to_owned();
        tokio::task::spawn_blocking(move || crate::configrepo::load_versioned(&data_dir, specs))
            .await??
    };
    for note in &drift {
        tracing::warn!("{note}");
    }
    let core = Core::new(cfg, data_dir, specs, cancel.clone())?;
    let released = core.store().release_all_inflight()?;
    if released > 0 {
        tracing::warn!(
            messages = released,
            "turns interrupted by the last stop will be delivered again"
        );
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(%listen, "hive-c0re listening for the homeserver");
    let server = axum::serve(listener, crate::c0re::server::router(core.clone()))
        .with_graceful_shutdown(cancel.clone().cancelled_owned());
    let server = tokio::spawn(async move { server.await.context("appservice endpoint failed") });

    // Rooms first: events are routed by the room they are in.
    let mut delay = Duration::from_millis(250);
    loop {
        match core.setup().await {
            Ok(()) => break,
            Err(e) if delay < Duration::from_secs(30) => {
                tracing::warn!(error = %format!("{e:#}"), "room set-up failed; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay *= 2;
            }
            Err(e) => return Err(e.context("cannot set up the hive's rooms")),
        }
    }
    core.set_ready();
    if let Err(e) = core.ping_homeserver().await {
        tracing::warn!(error = %format!("{e:#}"), "the homeserver could not ping hive-c0re; check the registration's url");
    }
    match core.reconcile().await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(events = n, "recovered events from room timelines"),
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "timeline reconciliation failed"),
    }

    let agent_runtime: Option<std::sync::Arc<dyn crate::runtime::Runtime>> = match runtime {
        RuntimeKind::Process => Some(std::sync::Arc::new(crate::runtime::process::Process)),
        RuntimeKind::Bwrap => Some(std::sync::Arc::new(
            tokio::task::spawn_blocking(crate::runtime::bwrap::Bwrap::new).await??,
        )),
        RuntimeKind::External => None,
    };
    core.set_runtime(agent_runtime);
    for name in core.agents().keys() {
        core.start_agent(name);
    }
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn({
        let c = core.clone();
        async move {
            c.heartbeat_loop().await;
            Ok(())
        }
    });
    tasks.spawn({
        let c = core.clone();
        async move {
            c.control_loop().await;
            Ok(())
        }
    });
    tasks.spawn({
        let c = core.clone();
        async move {
            c.approvals_loop().await;
            Ok(())
        }
    });
    tasks.spawn(core.clone().serve_control_socket());
    let pid_path = super::pid_file(data_dir, "c0re");
    crate::fsutil::write_atomic(&pid_path, std::process::id().to_string().as_bytes(), 0o644)?;
    let summary: Vec<String> = core
        .agents()
        .iter()
        .map(|(n, e)| format!("{n} ({})", e.user_id))
        .collect();
    tracing::info!(agents = %summary.join(", "), "hive-c0re ready");
    core.notice(
        None,
        &format!("🐝 hive-c0re is up with {} agents.", core.agents().len()),
    )
    .await;
    for note in drift {
        core.notice(None, &format!("ℹ️ {note}")).await;
    }

    cancel.cancelled().await;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "task ended with an error"),
            Err(e) if e.is_panic() => tracing::error!(error = %e, "task panicked"),
            _ => {}
        }
    }
    core.tasks().close();
    core.tasks().wait().await;
    server.await??;
    let _ = std::fs::remove_file(&pid_path);
    tracing::info!("hive-c0re stopped");
    Ok(())
}
