//! What the embedded Synapse federates, decided from the config alone ([`plan`]).
//!
//! Rules:
//! - `federation_domain_whitelist` is exactly the peers' server names (ports included, as
//!   Synapse compares them). No peers: `[]`, which Synapse reads as "federate with nobody".
//! - A TLS listener (resource `federation`, which also serves keys and media to peers) only when
//!   `[federation]` is configured, which validation allows only with peers; then
//!   `tls_certificate_path` / `tls_private_key_path`, and `federation_custom_ca_list` when a CA
//!   is given (it replaces the system's CAs for peers' certificates).
//! - Nothing here widens the outbound side: `ip_range_blacklist` stays Synapse's default
//!   (private ranges refused); tests on loopback relax it in [`FEDERATION_TEST_OVERRIDES`].
//!
//! Values are rendered as JSON, which YAML reads as flow values.

use std::path::PathBuf;

use anyhow::bail;
use serde_json::{Value, json};

use crate::config::Config;

/// Overrides for tests whose homeservers federate on loopback: peers are `localhost:<port>`,
/// which Synapse's default IP blocklist refuses; a peer that was down is retried after seconds,
/// not ten minutes.
pub const FEDERATION_TEST_OVERRIDES: &str =
    include_str!("../../synapse-config/test-federation.yaml");

/// The federation part of `homeserver.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct FederationPlan {
    /// An entry for `listeners:`; `None`: no federation port at all.
    pub listener: Option<Value>,
    /// `federation_domain_whitelist`.
    pub whitelist: Vec<String>,
    /// `tls_certificate_path` and `tls_private_key_path` (with the listener).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `federation_custom_ca_list`.
    pub custom_ca: Option<PathBuf>,
}

/// The plan for `cfg` (see the module's rules).
pub fn plan(cfg: &Config) -> FederationPlan {
    let whitelist = cfg
        .peers
        .iter()
        .map(|p| p.server_name.to_string())
        .collect();
    let Some(f) = &cfg.federation else {
        return FederationPlan {
            listener: None,
            whitelist,
            tls: None,
            custom_ca: None,
        };
    };
    let bind: Vec<String> = f.bind.iter().map(|a| a.to_string()).collect();
    FederationPlan {
        listener: Some(json!({
            "port": f.port,
            "bind_addresses": bind,
            "type": "http",
            "tls": true,
            "x_forwarded": false,
            "resources": [{ "names": ["federation"], "compress": false }],
        })),
        whitelist,
        tls: Some((f.tls_cert.clone(), f.tls_key.clone())),
        custom_ca: f.ca.clone(),
    }
}

impl FederationPlan {
    /// The listener as one line of the `listeners:` list (empty without one).
    pub fn listener_yaml(&self) -> String {
        match &self.listener {
            Some(l) => format!("  - {l}\n"),
            None => String::new(),
        }
    }

    /// The top-level keys.
    pub fn settings_yaml(&self) -> String {
        let s = |p: &PathBuf| json!(p.display().to_string());
        let mut out = format!("federation_domain_whitelist: {}\n", json!(self.whitelist));
        if let Some((cert, key)) = &self.tls {
            out.push_str(&format!(
                "tls_certificate_path: {}\ntls_private_key_path: {}\n",
                s(cert),
                s(key)
            ));
        }
        if let Some(ca) = &self.custom_ca {
            out.push_str(&format!("federation_custom_ca_list: [{}]\n", s(ca)));
        }
        out
    }
}

/// Refuses to render a listener whose certificate, key or CA file is missing: Synapse would
/// only say so in its log.
pub fn check_files(cfg: &Config) -> anyhow::Result<()> {
    let Some(f) = &cfg.federation else {
        return Ok(());
    };
    let files = [
        ("federation.tls_cert", Some(&f.tls_cert)),
        ("federation.tls_key", Some(&f.tls_key)),
        ("federation.ca", f.ca.as_ref()),
    ];
    for (key, path) in files {
        if let Some(p) = path
            && !p.is_file()
        {
            bail!("{key}: {} is not a file", p.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        Config::validate(toml::from_str(text).expect("test toml parses"), None)
            .expect("a valid config")
    }

    #[test]
    fn plans() {
        struct Case {
            name: &'static str,
            toml: &'static str,
            listener: bool,
            whitelist: &'static [&'static str],
            yaml_has: &'static [&'static str],
            yaml_lacks: &'static [&'static str],
        }
        let cases = [
            Case {
                name: "no peers: closed",
                toml: "",
                listener: false,
                whitelist: &[],
                yaml_has: &["federation_domain_whitelist: []\n"],
                yaml_lacks: &["tls_certificate_path", "federation_custom_ca_list"],
            },
            Case {
                name: "two peers, a listener, no CA",
                toml: "[homeserver]\nserver_name = \"localhost:8481\"\n\
                       [federation]\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n\
                       [[peers]]\nhive = \"hive-b\"\nserver_name = \"localhost:8483\"\n\
                       [[peers]]\nhive = \"hive-c\"\nserver_name = \"c.example.org\"\n",
                listener: true,
                whitelist: &["localhost:8483", "c.example.org"],
                yaml_has: &[
                    "federation_domain_whitelist: [\"localhost:8483\",\"c.example.org\"]\n",
                    "tls_certificate_path: \"/c.pem\"\n",
                    "tls_private_key_path: \"/k.pem\"\n",
                ],
                yaml_lacks: &["federation_custom_ca_list", "ip_range"],
            },
            Case {
                name: "a test CA",
                toml: "[homeserver]\nserver_name = \"localhost:8481\"\n\
                       [federation]\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\nca = \"/ca.pem\"\n\
                       [[peers]]\nhive = \"hive-b\"\nserver_name = \"localhost:8483\"\n",
                listener: true,
                whitelist: &["localhost:8483"],
                yaml_has: &["federation_custom_ca_list: [\"/ca.pem\"]\n"],
                yaml_lacks: &["ip_range"],
            },
            Case {
                name: "peers on an external homeserver: nothing to listen on here",
                toml: "[homeserver]\nembedded = false\nurl = \"https://m.example.org/\"\n\
                       server_name = \"example.org\"\n\
                       [[peers]]\nhive = \"hive-b\"\nserver_name = \"b.example.org\"\n",
                listener: false,
                whitelist: &["b.example.org"],
                yaml_has: &[],
                yaml_lacks: &["tls_certificate_path"],
            },
        ];
        for c in cases {
            let p = plan(&cfg(c.toml));
            assert_eq!(p.listener.is_some(), c.listener, "{}", c.name);
            assert_eq!(p.whitelist, c.whitelist, "{}", c.name);
            let yaml = p.settings_yaml();
            for want in c.yaml_has {
                assert!(yaml.contains(want), "{}: {want:?} not in\n{yaml}", c.name);
            }
            for not in c.yaml_lacks {
                assert!(!yaml.contains(not), "{}: {not:?} in\n{yaml}", c.name);
            }
            assert_eq!(p.listener_yaml().is_empty(), !c.listener, "{}", c.name);
        }
    }

    #[test]
    fn the_listener_is_tls_federation_on_the_configured_port() {
        let p = plan(&cfg("[homeserver]\nserver_name = \"localhost:8481\"\n\
             [federation]\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\nbind = [\"127.0.0.1\"]\n\
             [[peers]]\nhive = \"hive-b\"\nserver_name = \"localhost:8483\"\n"));
        assert_eq!(
            p.listener,
            Some(json!({
                "port": 8481,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": true,
                "x_forwarded": false,
                "resources": [{ "names": ["federation"], "compress": false }],
            }))
        );
    }

    #[test]
    fn missing_files_are_named() {
        let c = cfg("[homeserver]\nserver_name = \"localhost:8481\"\n\
             [federation]\ntls_cert = \"/nonexistent/c.pem\"\ntls_key = \"/nonexistent/k.pem\"\n\
             [[peers]]\nhive = \"hive-b\"\nserver_name = \"localhost:8483\"\n");
        let e = check_files(&c).unwrap_err().to_string();
        assert!(
            e.contains("federation.tls_cert") && e.contains("/nonexistent/c.pem"),
            "{e}"
        );
        check_files(&cfg("")).expect("nothing to check without a listener");
    }
}
