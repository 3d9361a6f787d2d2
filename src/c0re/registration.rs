//! The appservice registration: tokens generated once, the YAML file the homeserver loads.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::config::Config;

const TEMPLATE: &str = include_str!("../../synapse-config/registration.yaml");

/// The appservice's two secrets. `Debug` never shows them.
#[derive(Clone, Serialize, Deserialize)]
pub struct Tokens {
    /// hive-c0re → homeserver.
    pub as_token: String,
    /// homeserver → hive-c0re.
    pub hs_token: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens { <redacted> }")
    }
}

/// The one copy is [`crate::proc::random_secret`]; callers in the core still name it here.
pub use crate::proc::random_secret;

impl Tokens {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("appservice").join("tokens.json")
    }

    /// Loads the tokens, generating them on first use. Re-running never makes new ones.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not valid tokens JSON", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let t = Tokens {
                    as_token: random_secret(48),
                    hs_token: random_secret(48),
                };
                crate::fsutil::write_private(&path, &serde_json::to_vec_pretty(&t)?)?;
                Ok(t)
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn load(data_dir: &Path) -> anyhow::Result<Self> {
        let path = Self::path(data_dir);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "cannot read {} (run `hive up` once to create it)",
                path.display()
            )
        })?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not valid tokens JSON", path.display()))
    }
}

/// Renders the registration YAML. Values are written as JSON strings, which YAML reads as-is.
pub fn render(cfg: &Config, tokens: &Tokens) -> String {
    let q = |s: &str| serde_json::to_string(s).expect("a string serialises");
    let aliases: Vec<String> = cfg
        .alias_namespace_regexes()
        .iter()
        .map(|r| format!("    - exclusive: true\n      regex: {}", q(r)))
        .collect();
    TEMPLATE
        .replace("{{id}}", &q(&cfg.appservice_id))
        .replace(
            "{{url}}",
            &q(cfg.appservice_url.as_str().trim_end_matches('/')),
        )
        .replace("{{as_token}}", &q(&tokens.as_token))
        .replace("{{hs_token}}", &q(&tokens.hs_token))
        .replace("{{sender_localpart}}", &q(&cfg.sender_localpart))
        .replace("{{user_regex}}", &q(&cfg.user_namespace_regex()))
        .replace("{{alias_namespaces}}", &aliases.join("\n"))
}

/// Writes `<data>/appservice/registration.yaml` (mode 0600) and returns its path.
pub fn write(cfg: &Config, tokens: &Tokens, data_dir: &Path) -> anyhow::Result<PathBuf> {
    let path = data_dir.join("appservice").join("registration.yaml");
    crate::fsutil::write_private(&path, render(cfg, tokens).as_bytes())?;
    Ok(path)
}
