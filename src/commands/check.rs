//! `hive check`: validate `hive.toml` and every `agent.toml`, print the resolved configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::HiveDirs;
use crate::config::Config;

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
            if let Err(e) = crate::config::check_transport(&cfg) {
                eprintln!("error: {e:#}");
                ok = false;
            }
            Some(cfg)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            None
        }
    };
    ok &= cfg.is_some();
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
                let allowed: Vec<&str> = s.allowed_recipients.iter().map(|a| a.as_str()).collect();
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
                if let Some(why) = unpriced_dollar_budget(&cfg, s) {
                    ok = false;
                    eprintln!("error: {}: brain.limits: {why}", s.name);
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
