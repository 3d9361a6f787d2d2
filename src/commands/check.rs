//! `hive check`: validate `hive.toml` and every `agent.toml`, print the resolved configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::HiveDirs;
use crate::config::{Config, Credential, read_key_file};

/// The `providers` block of the resolved configuration.
fn render_providers(cfg: &Config) -> String {
    if cfg.providers.is_empty() {
        return "providers          none (model brains cannot think until one is declared)\n"
            .into();
    }
    let mut out = String::from("providers\n");
    for p in cfg.providers.values() {
        let key = match &p.credential {
            Credential::None => "no key".to_owned(),
            Credential::ApiKey(f) => format!("api key {}", f.display()),
            Credential::OauthToken(f) => format!("oauth token {}", f.display()),
        };
        let models = if p.models.is_empty() {
            "any".to_owned()
        } else {
            p.models.join(", ")
        };
        out.push_str(&format!(
            "  {:<12} {:<9} {}  {key}  models: {models}\n",
            p.name,
            p.kind.as_str(),
            p.base_url
        ));
    }
    out
}

/// Every declared provider's key file that the core could not read (missing, not a regular
/// file, over 64 KiB, empty), as `(key, why)`.
fn unreadable_keys(cfg: &Config) -> Vec<(String, String)> {
    cfg.providers
        .values()
        .filter_map(|p| {
            let field = match &p.credential {
                Credential::None => return None,
                Credential::ApiKey(_) => "api_key_file",
                Credential::OauthToken(_) => "oauth_token_file",
            };
            let file = p.credential.file()?;
            read_key_file(file)
                .err()
                .map(|why| (format!("providers.{}.{field}", p.name), format!("{why:#}")))
        })
        .collect()
}

/// Dollar budgets the core could not count: the model has no price in hive.toml.
fn unpriced_dollar_budget(cfg: &Config, s: &crate::agent_spec::AgentSpec) -> Option<String> {
    let l = s.brain.limits()?;
    if l.usd_per_message.is_none() && l.usd_per_day.is_none() {
        return None;
    }
    match s.brain.model() {
        Some(m) if cfg.price_of(m).is_some() => None,
        Some(m) => Some(format!(
            "dollar budgets need a price: hive.toml has no [prices.{m:?}] (every model call would be refused)"
        )),
        None => Some(
            "dollar budgets need a price, and so a `model` to look it up (every model call would be refused)"
                .into(),
        ),
    }
}

pub fn run(config_path: Option<PathBuf>, dirs: HiveDirs) -> anyhow::Result<ExitCode> {
    let mut ok = true;
    let cfg = match Config::load(config_path.as_deref()) {
        Ok(cfg) => {
            println!("{}", cfg.render());
            println!("{}", render_providers(&cfg));
            if let Err(e) = crate::config::check_transport(&cfg) {
                eprintln!("error: {e:#}");
                ok = false;
            }
            for (key, why) in unreadable_keys(&cfg) {
                eprintln!("error: {key}: {why}");
                ok = false;
            }
            Some(cfg)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            None
        }
    };
    let cfg_loaded = cfg.is_some();
    ok &= cfg_loaded;
    // Bots are checked even when hive.toml is broken: every error is reported in one run.
    let cfg = match cfg {
        Some(c) => c,
        None => Config::validate(Default::default(), None)
            .map_err(|_| anyhow::anyhow!("built-in defaults are invalid"))?,
    };
    match crate::agent_spec::load_all(&dirs.bots) {
        Ok(specs) => {
            println!("agents ({})", dirs.bots.display());
            for s in &specs {
                let allowed: Vec<String> = s
                    .allowed_recipients
                    .iter()
                    .map(|a| a.to_string())
                    .chain(s.remote_recipients.iter().map(|q| q.to_string()))
                    .collect();
                println!(
                    "  {:<12} {:<28} brain {:<12} may message: {}",
                    s.name.as_str(),
                    cfg.agent_user_id(&s.name).as_str(),
                    s.brain.kind(),
                    if allowed.is_empty() {
                        "operator only".to_owned()
                    } else {
                        format!("operator, {}", allowed.join(", "))
                    }
                );
            }
            for s in &specs {
                for why in crate::c0re::peering::decide::unbacked(s, &cfg.peers) {
                    eprintln!(
                        "warning: {}: allowed_recipients: {why}: messages to it will be refused",
                        s.name
                    );
                }
            }
            print_placements(&cfg, &dirs.data_dir, &specs);
            if cfg.runtime == crate::config::RuntimeKind::NixosContainer {
                let names: Vec<_> = specs.iter().map(|s| s.name.clone()).collect();
                for why in crate::runtime::nixos_container::clash_errors(&names) {
                    ok = false;
                    eprintln!("error: {why}");
                }
            }
            for s in &specs {
                if let Some(why) = unpriced_dollar_budget(&cfg, s) {
                    ok = false;
                    eprintln!("error: {}: brain.limits: {why}", s.name);
                }
                // Against the built-in defaults every named provider is undeclared: the
                // hive.toml errors above say what is wrong.
                if !cfg_loaded {
                    continue;
                }
                match cfg.provider_for(&s.brain) {
                    Ok(_) => {}
                    Err(why) if why.is_warning() => eprintln!("warning: {}: {why}", s.name),
                    Err(why) => {
                        ok = false;
                        eprintln!("error: {}: {why}", s.name);
                    }
                }
            }
        }
        Err(errs) => {
            ok = false;
            for e in errs {
                eprintln!("error: {e}");
            }
        }
    }
    if ok {
        println!("\nok");
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(1))
    }
}

/// Where each agent would run on this machine, and what running unsandboxed gives away.
/// Refusals are warnings: the hive runs, those agents wait for a sandbox or the opt-in.
fn print_placements(
    cfg: &Config,
    data_dir: &std::path::Path,
    specs: &[crate::agent_spec::AgentSpec],
) {
    use crate::config::RuntimeKind;
    use crate::runtime::placement::{Host, Placement, gives_away, own_code, place};
    let host = Host {
        sandbox: match cfg.runtime {
            RuntimeKind::Bwrap => crate::runtime::bwrap::available(),
            RuntimeKind::NixosContainer => crate::runtime::nixos_container::available(),
            kind => Err(format!("runtime.kind = {kind:?}").into()),
        },
        own_uids: crate::runtime::process::own_uids(data_dir),
        as_root: nix::unistd::geteuid().is_root(),
    };
    println!(
        "where agents run (sandbox here: {})",
        match &host.sandbox {
            Ok(()) => "yes".to_owned(),
            Err(e) => format!("no: {e}"),
        }
    );
    let mechanism = crate::runtime::limits::mechanism(crate::runtime::limits::Facts::gather());
    match cfg.runtime {
        RuntimeKind::Bwrap => println!("resource limits here: {}", mechanism.describe()),
        RuntimeKind::NixosContainer if host.sandbox.is_ok() => {
            println!("resource limits here: each container's unit (MemoryMax, CPUQuota, TasksMax)")
        }
        _ => {}
    }
    let mut unsandboxed = false;
    for s in specs {
        let p = place(
            cfg.runtime,
            cfg.allow_unsandboxed,
            &host,
            own_code(&s.brain).as_deref(),
        );
        let line = match &p {
            Placement::Sandboxed if cfg.runtime == RuntimeKind::NixosContainer => format!(
                "sandboxed (NixOS container {})",
                crate::runtime::nixos_container::container_name(&s.name)
            ),
            Placement::Sandboxed => "sandboxed (bwrap)".to_owned(),
            Placement::External => "started by someone else (external)".to_owned(),
            Placement::Unsandboxed { own_uid: true } => {
                unsandboxed = true;
                "UNSANDBOXED, as a uid of its own".to_owned()
            }
            Placement::Unsandboxed { own_uid: false } => {
                unsandboxed = true;
                "UNSANDBOXED, as the hive's own user".to_owned()
            }
            Placement::Refused(why) => {
                eprintln!("warning: {}: not started: {why}", s.name);
                "NOT STARTED (see the warning)".to_owned()
            }
        };
        let resources = s.resources.over(cfg.resources);
        let mechanism = match cfg.runtime {
            RuntimeKind::NixosContainer => Enforced::Container,
            _ => Enforced::Here(mechanism),
        };
        match limits_of(&p, mechanism, resources) {
            Some(limits) => println!("  {:<12} {line}; {limits}", s.name.as_str()),
            None => println!("  {:<12} {line}", s.name.as_str()),
        }
    }
    if unsandboxed {
        eprintln!(
            "warning: agents run unsandboxed here: {}",
            gives_away(&host)
        );
    }
}

/// Who enforces a sandboxed agent's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Enforced {
    /// The core, by this machine's mechanism (the `bwrap` runtime).
    Here(crate::runtime::limits::Mechanism),
    /// The agent's NixOS container's unit.
    Container,
}

/// What limits an agent placed so runs under, said for `hive check`: all of them in a systemd
/// scope or a NixOS container; memory alone (`RLIMIT_DATA` and the watchdog) otherwise; none
/// for an agent someone else starts, or one that is not started.
fn limits_of(
    p: &crate::runtime::placement::Placement,
    enforced: Enforced,
    r: crate::agent_spec::resources::Resources,
) -> Option<String> {
    use crate::runtime::limits::Mechanism;
    use crate::runtime::placement::Placement;
    let memory = r.memory_bytes >> 20;
    match (p, enforced) {
        (
            Placement::Sandboxed,
            Enforced::Container | Enforced::Here(Mechanism::SystemdScope { .. }),
        ) => Some(format!(
            "limits: memory {memory} MiB, cpu {}%, tasks {}",
            r.cpu_percent, r.tasks
        )),
        (Placement::Sandboxed | Placement::Unsandboxed { .. }, _) => Some(format!(
            "limits: memory {memory} MiB (cpu and tasks not enforced here)"
        )),
        (Placement::External | Placement::Refused(_), _) => None,
    }
}

#[cfg(test)]
mod limits_tests {
    use super::{Enforced, limits_of};
    use crate::agent_spec::resources::Resources;
    use crate::runtime::limits::Mechanism;
    use crate::runtime::placement::Placement;

    #[test]
    fn each_placement_says_what_is_enforced() {
        let r = Resources {
            memory_bytes: 512 << 20,
            cpu_percent: 150,
            tasks: 64,
        };
        let scope = Enforced::Here(Mechanism::SystemdScope { user: false });
        let rlimits = Enforced::Here(Mechanism::Rlimits);
        let all = "limits: memory 512 MiB, cpu 150%, tasks 64";
        let memory = "limits: memory 512 MiB (cpu and tasks not enforced here)";
        let cases: Vec<(&str, Placement, Enforced, Option<&str>)> = vec![
            ("bwrap in a scope", Placement::Sandboxed, scope, Some(all)),
            (
                "bwrap, no systemd",
                Placement::Sandboxed,
                rlimits,
                Some(memory),
            ),
            (
                "a NixOS container",
                Placement::Sandboxed,
                Enforced::Container,
                Some(all),
            ),
            (
                "unsandboxed: the scope is bwrap's only",
                Placement::Unsandboxed { own_uid: true },
                scope,
                Some(memory),
            ),
            ("external: not ours", Placement::External, scope, None),
            (
                "not started",
                Placement::Refused("no sandbox".to_owned()),
                rlimits,
                None,
            ),
        ];
        for (name, p, m, want) in cases {
            assert_eq!(limits_of(&p, m, r).as_deref(), want, "{name}");
        }
    }
}
