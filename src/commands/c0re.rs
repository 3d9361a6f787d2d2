//! `hive c0re`: the appservice and the agents, against a running homeserver.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::agent_spec::AgentSpec;
use crate::c0re::tasks::{Fatal, Tasks};
use crate::c0re::{Core, registration};
use crate::cli::HiveDirs;
use crate::config::{Config, RuntimeKind};

pub async fn run(config_path: Option<PathBuf>, dirs: HiveDirs) -> anyhow::Result<ExitCode> {
    let mut cfg = Config::load(config_path.as_deref())?;
    // The CLI a former `hive up` installed, when the operator names none.
    cfg.claude_code = cfg
        .claude_code
        .take()
        .or_else(|| crate::install::installed_claude_code(&dirs.data_dir));
    crate::config::check_transport(&cfg)?;
    let specs = super::load_bots(&dirs.bots)?;
    prepare_data_dir(&cfg, &dirs.data_dir)?;
    let cancel = super::shutdown_token()?;
    serve(cfg, &dirs.data_dir, specs, cancel).await?;
    Ok(ExitCode::SUCCESS)
}

/// `hive registration`: what `hive c0re` prepares before it serves (data dir, tokens, the
/// registration file), without serving; prints the registration's path. An external homeserver
/// that reads the registration at start (Synapse's `app_service_config_files`) needs it first.
pub fn registration(config_path: Option<PathBuf>, dirs: HiveDirs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config_path.as_deref())?;
    let path = prepare_data_dir(&cfg, &dirs.data_dir)?;
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Creates the data dir, the tokens and the web console's key (once) and the registration file.
/// Returns the registration.
pub fn prepare_data_dir(cfg: &Config, data_dir: &Path) -> anyhow::Result<PathBuf> {
    crate::fsutil::private_dir(data_dir)?;
    let tokens = registration::Tokens::load_or_create(data_dir)?;
    // The web console's key, made now so the secret filter knows it from the first start.
    crate::c0re::web::session::Key::load_or_create(data_dir)?;
    registration::write(cfg, &tokens, data_dir)
}

/// What this machine allows agents: a sandbox (probed), uids of their own (root, a reachable
/// data dir: then the harness's programs are copied where those uids reach them).
fn runtimes(
    kind: RuntimeKind,
    data_dir: &Path,
    claude_code: Option<&Path>,
) -> crate::runtime::Runtimes {
    use crate::runtime::placement::{Host, Lacking};
    use crate::runtime::{Runtimes, bwrap::Bwrap, nixos_container::NixosContainer, process};
    let (mut bwrap, mut container) = (None, None);
    let sandbox = match kind {
        RuntimeKind::Bwrap => Bwrap::new().map(|b| bwrap = Some(b)),
        RuntimeKind::NixosContainer => NixosContainer::new().map(|c| container = Some(c)),
        _ => Err(anyhow::anyhow!("runtime.kind = {kind:?}")),
    }
    .map_err(|e| {
        if matches!(kind, RuntimeKind::Bwrap | RuntimeKind::NixosContainer) {
            tracing::warn!(error = %format!("{e:#}"), "no sandbox can run here");
        }
        Lacking::from(e)
    });
    let own_uids = if kind == RuntimeKind::External {
        Err(Lacking::new("the external runtime starts no harness"))
    } else {
        process::own_uids(data_dir)
    };
    let (own_uids, bin) = match own_uids {
        Ok(()) => match process::install_bin(data_dir, claude_code) {
            Ok(bin) => (Ok(()), Some(bin)),
            Err(e) => (Err(e.into()), None),
        },
        Err(e) => (Err(e), None),
    };
    Runtimes {
        host: Host {
            sandbox,
            own_uids,
            as_root: nix::unistd::geteuid().is_root(),
        },
        bwrap,
        container,
        bin,
    }
}

/// The start-up notice for `#hive-c0re` when an agent is not sandboxed: where each runs and
/// what that gives away. `None` when every agent is sandboxed (or started by someone else).
fn placements_notice(core: &Core, rt: &crate::runtime::Runtimes) -> Option<String> {
    use crate::runtime::placement::{Placement, gives_away, own_code, place};
    let cfg = core.cfg();
    let mut lines = Vec::new();
    for (name, entry) in core.agents().all() {
        let spec = entry.spec();
        match place(
            cfg.runtime,
            cfg.allow_unsandboxed,
            &rt.host,
            own_code(&spec.brain).as_deref(),
        ) {
            Placement::Sandboxed | Placement::External => {}
            Placement::Unsandboxed { own_uid } => lines.push(format!(
                "- **{name}** runs unsandboxed{}",
                if own_uid {
                    ", as a uid of its own"
                } else {
                    ", as the hive's own user"
                }
            )),
            Placement::Refused(why) => lines.push(format!("- **{name}** is not started: {why}")),
        }
    }
    if lines.is_empty() {
        return None;
    }
    let why = match &rt.host.sandbox {
        Ok(()) => "runtime.kind asks for no sandbox".to_owned(),
        Err(e) => format!("no sandbox can run here: {e}"),
    };
    Some(format!(
        "⚠️ Not every agent is sandboxed ({why}). Unsandboxed, {}.\n{}",
        gives_away(&rt.host),
        lines.join("\n")
    ))
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
    if runtime == RuntimeKind::NixosContainer {
        let names: Vec<_> = specs.iter().map(|s| s.name.clone()).collect();
        if let Some(why) = crate::runtime::nixos_container::clash_errors(&names).first() {
            anyhow::bail!("{why} (runtime.kind = \"nixos-container\")");
        }
    }
    let (specs, drift) = {
        let data_dir = data_dir.to_owned();
        tokio::task::spawn_blocking(move || crate::configrepo::load_versioned(&data_dir, specs))
            .await??
    };
    for note in &drift {
        tracing::warn!("{note}");
    }
    // What the core received before this moment is known history for the start's timeline check.
    let started_us = crate::store::now_us();
    let core = Core::new(cfg, data_dir, specs, cancel.clone())?;
    // Kept (destroyed) agents are neither set up nor started.
    for name in core.drop_kept_agents()? {
        tracing::info!(agent = %name, "kept: not started");
    }
    let released = core.store().release_all_inflight()?;
    if released > 0 {
        tracing::warn!(
            messages = released,
            "turns interrupted by the last stop will be delivered again"
        );
    }
    let listener = std::net::TcpListener::bind(listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(%listen, "hive-c0re listening for the homeserver");
    let fatal = Fatal::default();
    let mut tasks = Tasks::new(cancel.clone(), fatal.clone());
    // The homeserver's only way in: without it nothing is routed and nothing approved.
    tasks.spawn_critical("appservice endpoint", {
        let (core, cancel) = (core.clone(), cancel.clone());
        move || {
            let listener = listener.try_clone();
            let (core, cancel) = (core.clone(), cancel.clone());
            async move {
                let listener = tokio::net::TcpListener::from_std(listener?)?;
                axum::serve(listener, crate::c0re::server::router(core))
                    .with_graceful_shutdown(cancel.cancelled_owned())
                    .await
                    .context("appservice endpoint failed")
            }
        }
    });
    start_web_console(&core, &mut tasks, &cancel);

    // Rooms first: events are routed by the room they are in.
    let mut delay = Duration::from_millis(250);
    loop {
        match core.setup().await {
            Ok(()) => break,
            Err(e) if delay < Duration::from_secs(30) => {
                tracing::warn!(error = %format!("{e:#}"), "room set-up failed; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return stopped_because(&fatal),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay *= 2;
            }
            Err(e) => return Err(e.context("cannot set up the hive's rooms")),
        }
    }
    core.rooms().set_ready();
    if let Err(e) = core.ping_homeserver().await {
        tracing::warn!(error = %format!("{e:#}"), "the homeserver could not ping hive-c0re; check the registration's url");
    }
    let runtimes = {
        let data = data_dir.to_owned();
        let cli = core.cfg().claude_code.clone();
        tokio::task::spawn_blocking(move || runtimes(runtime, &data, cli.as_deref())).await?
    };
    let placements = placements_notice(&core, &runtimes);
    core.agents().set_runtimes(std::sync::Arc::new(runtimes));
    for name in core.agents().all().keys() {
        core.start_agent(name);
    }
    // The timeline check (what the homeserver has but never pushed: one read per room) runs
    // beside the agents, off the path to ready: what Synapse queued while the core was down
    // comes at once after the `/ping` above, an event the check finds is accepted exactly as a
    // pushed one (deduplicated by event id), and ingest was already live while it ran before.
    // What it recovers may reach an agent after a newer message pushed meanwhile.
    tokio::spawn({
        let (core, cancel) = (core.clone(), cancel.clone());
        async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                r = core.reconcile(started_us) => match r {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(events = n, "recovered events from room timelines"),
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "timeline reconciliation failed"),
                },
            }
        }
    });
    macro_rules! task {
        ($spawn:ident, $name:literal, $run:ident) => {{
            let c = core.clone();
            tasks.$spawn($name, move || {
                let c = c.clone();
                async move {
                    c.$run().await;
                    Ok(())
                }
            });
        }};
    }
    task!(spawn, "heartbeat", heartbeat_loop);
    task!(spawn, "control", control_loop);
    // The gate fails closed: a panic in it stops the hive (c0re/tasks.rs).
    task!(spawn_critical, "approvals", approvals_loop);
    task!(spawn, "outbox", outbox_loop);
    task!(spawn, "peering", peering_loop);
    task!(spawn, "prune", prune_loop);
    task!(spawn, "schedules", schedules_loop);
    task!(spawn, "console", console_loop);
    task!(spawn, "signals", signals_loop);
    if core.cfg().forge.enabled() {
        task!(spawn, "forge", forge_loop);
    }
    {
        let c = core.clone();
        tasks.spawn("control socket", move || c.clone().serve_control_socket());
    }
    let pid_path = super::pid_file(data_dir, "c0re");
    crate::fsutil::write_atomic(&pid_path, std::process::id().to_string().as_bytes(), 0o644)?;
    let summary: Vec<String> = core
        .agents()
        .all()
        .iter()
        .map(|(n, e)| format!("{n} ({})", e.user_id))
        .collect();
    tracing::info!(agents = %summary.join(", "), "hive-c0re ready");
    core.notice(
        None,
        &format!(
            "🐝 hive-c0re is up with {} agents.",
            core.agents().all().len()
        ),
    )
    .await;
    for note in drift {
        core.notice(None, &format!("ℹ️ {note}")).await;
    }
    if let Some(text) = placements {
        core.notice(None, &text).await;
    }

    cancel.cancelled().await;
    let stopped = tasks.shutdown(SHUTDOWN).await;
    core.agents().tasks().close();
    if tokio::time::timeout(SHUTDOWN, core.agents().tasks().wait())
        .await
        .is_err()
    {
        tracing::error!(
            timeout_s = SHUTDOWN.as_secs(),
            "agents' tasks did not stop in time"
        );
    }
    if let Err(e) = std::fs::remove_file(&pid_path) {
        // Only `hive status` reads it; a stale one names a pid that is gone.
        tracing::warn!(path = %pid_path.display(), error = %e, "could not remove the pid file");
    }
    if let Err(e) = stopped {
        tracing::error!(error = %format!("{e:#}"), "shutdown timed out");
    }
    stopped_because(&fatal)?;
    tracing::info!("hive-c0re stopped");
    Ok(())
}

/// Serves the operator's web console beside the endpoint (`[web]`) and prints its first login
/// link. A console that cannot be served is said loudly and the hive runs without it: Matrix
/// stays the operator's way in.
fn start_web_console(core: &Core, tasks: &mut Tasks, cancel: &CancellationToken) {
    use crate::c0re::web;
    let cfg = &core.cfg().web;
    let started = web::serve::bind(cfg).and_then(|l| match l {
        None => Ok(None),
        Some(l) => {
            let bound = l
                .local_addr()
                .context("the console's listener has no address")?;
            web::serve::start(core, bound)?;
            Ok(Some((l, bound)))
        }
    });
    let (listener, bound) = match started {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "the web console is not served");
            eprintln!("hive: the web console is not served: {e:#}");
            return;
        }
    };
    tracing::info!(listen = %bound, "web console listening");
    tasks.spawn("web console", {
        let (core, cancel) = (core.clone(), cancel.clone());
        move || {
            let listener = listener.try_clone();
            let (core, cancel) = (core.clone(), cancel.clone());
            async move { web::serve::serve(core, listener?, cancel).await }
        }
    });
    // The link goes to stderr (the operator's terminal, or a service manager's journal, which
    // keeps it: it expires and works once), never through `tracing`. "On this machine" when
    // its host (`web.url`'s when set, else the address bound) is loopback.
    match core.web().login_link() {
        Ok(url) => eprintln!(
            "{}",
            web::link_lines(
                &url,
                cfg.link_ttl_secs,
                crate::config::is_loopback_url(&url)
            )
        ),
        Err(e) => eprintln!("hive: no login link for the web console: {e}; try `hive console`"),
    }
}

/// `Ok` for a stop that was asked for; the task that stopped the hive, if one did.
fn stopped_because(fatal: &Fatal) -> anyhow::Result<()> {
    match fatal.get() {
        Some(why) => anyhow::bail!("hive-c0re stopped because {why}"),
        None => Ok(()),
    }
}

/// How long a stop waits for the core's loops (the endpoint's drain included), and then as long
/// again for the agents' tasks (a harness in a turn is given its own grace by its supervisor,
/// within this).
const SHUTDOWN: Duration = Duration::from_secs(30);
