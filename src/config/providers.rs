//! `[providers.<name>]` in hive.toml: the model servers the hive may call, and with which key.
//!
//! An agent's `agent.toml` is written by a manager agent and approved by the operator, so it may
//! only *name* a provider (`brain.provider`); where the core sends the calls and which key it
//! adds is the operator's, in hive.toml. The rules:
//!
//! - `base_url` is `https`, or `http` to a loopback host (`127.0.0.0/8`, `::1`, `localhost`);
//!   it has no query, no fragment and no user info (the core appends path segments to it, so a
//!   `?` could not swallow them anyway, but a URL that looks like it does is refused).
//! - At most one credential: `api_key_file`, or `oauth_token_file` (anthropic only); neither for
//!   a local server without auth. Relative paths are relative to hive.toml.
//! - `models` lists the model ids agents may use through it (empty: any).
//!
//! The core appends the API's path to `base_url` as path segments (`c0re::models::endpoint`).
//! [`Config::provider_for`] is the cross-check between an agent's brain and these declarations
//! (used by `hive check`, by the core at every model call, and when a config is approved).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::{Host, Url};

use super::{Config, ConfigError};
use crate::agent_spec::BrainSpec;

/// The largest key or token file the core reads.
pub const MAX_KEY_FILE: u64 = 64 << 10;

/// Which API a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI-compatible chat completions (OpenAI, ollama, llama.cpp, vLLM).
    Openai,
    /// The Anthropic Messages API.
    Anthropic,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
        }
    }

    /// Where the provider's API lives when `base_url` is not given.
    fn default_base_url(self) -> &'static str {
        match self {
            ProviderKind::Openai => "https://api.openai.com/v1",
            ProviderKind::Anthropic => "https://api.anthropic.com",
        }
    }
}

/// `[providers.<name>]`, as serde reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub kind: ProviderKind,
    /// Default: the kind's public API (`https://api.openai.com/v1`, `https://api.anthropic.com`).
    pub base_url: Option<String>,
    pub api_key_file: Option<PathBuf>,
    /// A Claude subscription's OAuth token (`claude setup-token`), anthropic only.
    pub oauth_token_file: Option<PathBuf>,
    /// Model ids agents may use through this provider (empty or absent: any).
    #[serde(default)]
    pub models: Vec<String>,
}

/// How the core authenticates to a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A local server without auth.
    None,
    /// An API key: `Authorization: Bearer` (openai) or `x-api-key` (anthropic).
    ApiKey(PathBuf),
    /// A Claude subscription's OAuth token, sent as a bearer token with the OAuth beta header.
    OauthToken(PathBuf),
}

impl Credential {
    /// The file the secret is in, if any.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Credential::None => None,
            Credential::ApiKey(p) | Credential::OauthToken(p) => Some(p),
        }
    }
}

/// A validated provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// https, or http to a loopback host; no query, fragment or user info.
    pub base_url: Url,
    pub credential: Credential,
    /// Allowed model ids (empty: any).
    pub models: Vec<String>,
}

impl Provider {
    /// Whether agents may use `model` through this provider.
    pub fn allows(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == model)
    }
}

/// The provider-name rule lives with the agent's config, which names providers.
pub use crate::agent_spec::is_provider_name;

/// Whether `host` is loopback: `127.0.0.0/8`, `::1` or `localhost`.
fn is_loopback(host: Host<&str>) -> bool {
    match host {
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Host::Domain(d) => d == "localhost" || d.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()),
    }
}

/// Why a provider's `base_url` is refused.
#[derive(Debug, thiserror::Error)]
pub enum BadBaseUrl {
    #[error("{0:?} is not a URL: {1}")]
    NotAUrl(String, url::ParseError),
    #[error("{0:?} has no host")]
    NoHost(String),
    #[error(
        "{0:?} is plain http to a host that is not loopback: use https (http only to 127.0.0.0/8, ::1 or localhost)"
    )]
    PlainHttp(String),
    #[error("{0:?} is {1}:, not an http(s) URL")]
    Scheme(String, String),
    #[error("{0:?} has a query (`?`): give the base URL only")]
    Query(String),
    #[error("{0:?} has a fragment (`#`): give the base URL only")]
    Fragment(String),
    #[error("{0:?} has user info: put the credential in api_key_file, not in the URL")]
    UserInfo(String),
}

/// Checks one provider's `base_url`: the reason it is refused, if it is.
pub fn check_base_url(text: &str) -> Result<Url, BadBaseUrl> {
    let t = || text.to_owned();
    let url = Url::parse(text).map_err(|e| BadBaseUrl::NotAUrl(t(), e))?;
    let host = url.host().ok_or_else(|| BadBaseUrl::NoHost(t()))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(host) => {}
        "http" => return Err(BadBaseUrl::PlainHttp(t())),
        other => return Err(BadBaseUrl::Scheme(t(), other.to_owned())),
    }
    if url.query().is_some() {
        return Err(BadBaseUrl::Query(t()));
    }
    if url.fragment().is_some() {
        return Err(BadBaseUrl::Fragment(t()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(BadBaseUrl::UserInfo(t()));
    }
    Ok(url)
}

/// Validates `[providers]`; each error names its key (`providers.<name>.base_url`).
pub(super) fn validate(
    raw: BTreeMap<String, RawProvider>,
    resolve: impl Fn(PathBuf) -> PathBuf,
    errs: &mut Vec<ConfigError>,
) -> BTreeMap<String, Provider> {
    let mut out = BTreeMap::new();
    for (name, p) in raw {
        let mut err = |field: &str, message: String| {
            let key = if field.is_empty() {
                format!("providers.{name}")
            } else {
                format!("providers.{name}.{field}")
            };
            errs.push(ConfigError {
                key: key.into(),
                message,
            });
        };
        if !is_provider_name(&name) {
            err(
                "",
                format!("{name:?} is not a provider name: lowercase [a-z][a-z0-9_-]{{0,31}}"),
            );
        }
        let base_url = match check_base_url(
            p.base_url
                .as_deref()
                .unwrap_or_else(|| p.kind.default_base_url()),
        ) {
            Ok(u) => Some(u),
            Err(why) => {
                err("base_url", why.to_string());
                None
            }
        };
        let credential = match (p.api_key_file, p.oauth_token_file) {
            (Some(_), Some(_)) => {
                err(
                    "oauth_token_file",
                    "give api_key_file or oauth_token_file, not both".into(),
                );
                None
            }
            (None, Some(_)) if p.kind != ProviderKind::Anthropic => {
                err(
                    "oauth_token_file",
                    format!(
                        "a subscription's OAuth token is for anthropic providers, not {}",
                        p.kind.as_str()
                    ),
                );
                None
            }
            (Some(k), None) => Some(Credential::ApiKey(resolve(k))),
            (None, Some(t)) => Some(Credential::OauthToken(resolve(t))),
            (None, None) => Some(Credential::None),
        };
        if let Some(m) = p
            .models
            .iter()
            .find(|m| m.trim().is_empty() || m.trim() != *m)
        {
            err("models", format!("{m:?} is not a model id"));
        }
        if let (Some(base_url), Some(credential)) = (base_url, credential) {
            out.insert(
                name.clone(),
                Provider {
                    name,
                    kind: p.kind,
                    base_url,
                    credential,
                    models: p.models,
                },
            );
        }
    }
    out
}

/// Why an agent's brain cannot call a model through the hive's providers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderRefusal {
    /// The brain names no provider and hive.toml declares none under its API's name. Not a
    /// config error (a fresh hive has no providers yet), but it cannot think.
    #[error("no [providers.{default}] in hive.toml: it cannot think until one is declared")]
    NoneDeclared { default: &'static str },
    #[error("brain.provider {name:?} is not declared in hive.toml (no [providers.{name}])")]
    Undeclared { name: String },
    #[error(
        "brain.provider {name:?} speaks {found}, but this {brain} brain needs a provider of kind = \"{wanted}\""
    )]
    WrongKind {
        name: String,
        brain: &'static str,
        found: &'static str,
        wanted: &'static str,
    },
    #[error("brain.model {model:?} is not in [providers.{name}] models ({allowed})")]
    ModelNotAllowed {
        name: String,
        model: String,
        allowed: String,
    },
}

impl ProviderRefusal {
    /// Whether `hive check` reports this as a warning rather than an error.
    pub fn is_warning(&self) -> bool {
        matches!(self, ProviderRefusal::NoneDeclared { .. })
    }
}

/// The provider name a brain uses when it names none: its API's.
fn default_provider(kind: ProviderKind) -> &'static str {
    kind.as_str()
}

impl Config {
    /// The provider `brain` calls its model through, checked against hive.toml: declared, of
    /// the kind the brain speaks, and allowing the brain's model (a `claude-code` brain without
    /// a `model` is checked per call, with [`Provider::allows`]). `Ok(None)`: the brain calls
    /// no model (scripted, command). A brain naming no provider uses the one named after its
    /// API (`openai`; `anthropic` for anthropic and claude-code).
    pub fn provider_for(&self, brain: &BrainSpec) -> Result<Option<&Provider>, ProviderRefusal> {
        let Some((wanted, named)) = brain_provider(brain) else {
            return Ok(None);
        };
        let provider = match named {
            Some(name) => self
                .providers
                .get(name)
                .ok_or_else(|| ProviderRefusal::Undeclared { name: name.into() })?,
            None => self.providers.get(default_provider(wanted)).ok_or(
                ProviderRefusal::NoneDeclared {
                    default: default_provider(wanted),
                },
            )?,
        };
        if provider.kind != wanted {
            return Err(ProviderRefusal::WrongKind {
                name: provider.name.clone(),
                brain: brain.kind(),
                found: provider.kind.as_str(),
                wanted: wanted.as_str(),
            });
        }
        if let Some(model) = brain.model()
            && !provider.allows(model)
        {
            return Err(ProviderRefusal::ModelNotAllowed {
                name: provider.name.clone(),
                model: model.into(),
                allowed: provider.models.join(", "),
            });
        }
        Ok(Some(provider))
    }
}

/// The API a model brain speaks and the provider it names (`None` for brains without a model).
fn brain_provider(brain: &BrainSpec) -> Option<(ProviderKind, Option<&str>)> {
    match brain {
        BrainSpec::Openai { provider, .. } => Some((ProviderKind::Openai, provider.as_deref())),
        BrainSpec::Anthropic { provider, .. } | BrainSpec::ClaudeCode { provider, .. } => {
            Some((ProviderKind::Anthropic, provider.as_deref()))
        }
        BrainSpec::Scripted { .. } | BrainSpec::Command { .. } => None,
    }
}

/// Reads a key or token file, bounded: a regular file of at most [`MAX_KEY_FILE`] bytes,
/// UTF-8, trimmed, not empty ([`crate::fsutil::read_secret`]).
pub fn read_key_file(path: &Path) -> anyhow::Result<String> {
    crate::fsutil::read_secret(path, MAX_KEY_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    fn cfg(text: &str) -> Result<Config, Vec<ConfigError>> {
        let raw: RawConfig = toml::from_str(text).expect("test toml parses");
        Config::validate(raw, Some(PathBuf::from("/etc/hive/hive.toml")))
    }

    fn provider(body: &str) -> Result<Provider, Vec<ConfigError>> {
        cfg(&format!("[providers.p]\n{body}"))
            .map(|c| c.providers.get("p").expect("declared").clone())
    }

    #[test]
    fn provider_validation() {
        let ok: &[(&str, &str, Credential)] = &[
            (
                "kind = \"openai\"\nbase_url = \"http://127.0.0.1:11434/v1\"",
                "http://127.0.0.1:11434/v1",
                Credential::None,
            ),
            (
                "kind = \"openai\"\nbase_url = \"http://127.8.9.10/\"",
                "http://127.8.9.10/",
                Credential::None,
            ),
            (
                "kind = \"openai\"\nbase_url = \"http://[::1]:8080/v1/\"",
                "http://[::1]:8080/v1/",
                Credential::None,
            ),
            (
                "kind = \"openai\"\nbase_url = \"http://localhost:1234\"",
                "http://localhost:1234/",
                Credential::None,
            ),
            (
                "kind = \"openai\"\napi_key_file = \"keys/openai.key\"",
                "https://api.openai.com/v1",
                Credential::ApiKey("/etc/hive/keys/openai.key".into()),
            ),
            (
                "kind = \"anthropic\"\noauth_token_file = \"/run/claude.token\"",
                "https://api.anthropic.com/",
                Credential::OauthToken("/run/claude.token".into()),
            ),
            (
                "kind = \"anthropic\"\nbase_url = \"https://gateway.example/anthropic\"\napi_key_file = \"/k\"",
                "https://gateway.example/anthropic",
                Credential::ApiKey("/k".into()),
            ),
        ];
        for (body, url, credential) in ok {
            let p = provider(body).unwrap_or_else(|e| panic!("{body}: {e:?}"));
            assert_eq!(p.base_url.as_str(), *url, "{body}");
            assert_eq!(&p.credential, credential, "{body}");
        }
        let bad: &[(&str, &str, &str)] = &[
            (
                "kind = \"openai\"\nbase_url = \"http://api.example.com/v1\"",
                "providers.p.base_url",
                "plain http",
            ),
            (
                "kind = \"openai\"\nbase_url = \"http://10.0.0.5:11434/v1\"",
                "providers.p.base_url",
                "plain http",
            ),
            (
                "kind = \"openai\"\nbase_url = \"http://localhost.example/v1\"",
                "providers.p.base_url",
                "plain http",
            ),
            (
                "kind = \"openai\"\nbase_url = \"https://evil.example/x?\"",
                "providers.p.base_url",
                "query",
            ),
            (
                "kind = \"openai\"\nbase_url = \"https://evil.example/x?a=b\"",
                "providers.p.base_url",
                "query",
            ),
            (
                "kind = \"openai\"\nbase_url = \"https://evil.example/x#\"",
                "providers.p.base_url",
                "fragment",
            ),
            (
                "kind = \"openai\"\nbase_url = \"https://user:pw@api.example/v1\"",
                "providers.p.base_url",
                "user info",
            ),
            (
                "kind = \"openai\"\nbase_url = \"https://user@api.example/v1\"",
                "providers.p.base_url",
                "user info",
            ),
            (
                "kind = \"openai\"\nbase_url = \"file:///etc/passwd\"",
                "providers.p.base_url",
                "",
            ),
            (
                "kind = \"openai\"\nbase_url = \"not a url\"",
                "providers.p.base_url",
                "not a URL",
            ),
            (
                "kind = \"anthropic\"\napi_key_file = \"/k\"\noauth_token_file = \"/t\"",
                "providers.p.oauth_token_file",
                "not both",
            ),
            (
                "kind = \"openai\"\noauth_token_file = \"/t\"",
                "providers.p.oauth_token_file",
                "anthropic",
            ),
            (
                "kind = \"openai\"\nmodels = [\"\"]",
                "providers.p.models",
                "model id",
            ),
        ];
        for (body, key, why) in bad {
            let errs = provider(body).expect_err(body);
            assert!(
                errs.iter()
                    .any(|e| e.key == *key && e.message.contains(why)),
                "{body}: want {key} ({why}), got {errs:?}"
            );
        }
        let errs = cfg("[providers.Big]\nkind = \"openai\"").expect_err("a bad name");
        assert!(errs.iter().any(|e| e.key == "providers.Big"), "{errs:?}");
        for (text, why) in [
            (
                "[providers.p]\nkind = \"gemini\"",
                "unknown variant `gemini`",
            ),
            (
                "[providers.p]\nbase_url = \"https://x\"",
                "missing field `kind`",
            ),
            (
                "[providers.p]\nkind = \"openai\"\nkey = \"x\"",
                "unknown field `key`",
            ),
        ] {
            let e = toml::from_str::<RawConfig>(text).expect_err(text);
            assert!(e.message().contains(why), "{text}: {e}");
        }
    }

    fn brain(text: &str) -> BrainSpec {
        #[derive(Deserialize)]
        struct B {
            brain: BrainSpec,
        }
        toml::from_str::<B>(&format!("[brain]\n{text}"))
            .expect("test brain parses")
            .brain
    }

    #[test]
    fn brains_and_providers() {
        let hive = cfg(concat!(
            "[providers.openai]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:11434/v1\"\n",
            "[providers.anthropic]\nkind = \"anthropic\"\napi_key_file = \"/k\"\nmodels = [\"claude-a\", \"claude-b\"]\n",
            "[providers.sub]\nkind = \"anthropic\"\noauth_token_file = \"/t\"\n",
        ))
        .unwrap();
        let empty = cfg("").unwrap();
        let refused = |name: &str| ProviderRefusal::Undeclared { name: name.into() };
        type Want = Result<Option<&'static str>, ProviderRefusal>;
        let cases: Vec<(&Config, &str, Want)> = vec![
            (&hive, "kind = \"scripted\"", Ok(None)),
            (&empty, "kind = \"command\"\ncommand = [\"x\"]", Ok(None)),
            (
                &hive,
                "kind = \"openai\"\nmodel = \"qwen\"",
                Ok(Some("openai")),
            ),
            (
                &hive,
                "kind = \"anthropic\"\nmodel = \"claude-a\"",
                Ok(Some("anthropic")),
            ),
            (&hive, "kind = \"claude-code\"", Ok(Some("anthropic"))),
            (
                &hive,
                "kind = \"claude-code\"\nmodel = \"m\"\nprovider = \"sub\"",
                Ok(Some("sub")),
            ),
            (
                &hive,
                "kind = \"openai\"\nmodel = \"m\"\nprovider = \"nope\"",
                Err(refused("nope")),
            ),
            (
                &empty,
                "kind = \"claude-code\"",
                Err(ProviderRefusal::NoneDeclared {
                    default: "anthropic",
                }),
            ),
            (
                &empty,
                "kind = \"openai\"\nmodel = \"m\"",
                Err(ProviderRefusal::NoneDeclared { default: "openai" }),
            ),
            (
                &hive,
                "kind = \"openai\"\nmodel = \"m\"\nprovider = \"sub\"",
                Err(ProviderRefusal::WrongKind {
                    name: "sub".into(),
                    brain: "openai",
                    found: "anthropic",
                    wanted: "openai",
                }),
            ),
            (
                &hive,
                "kind = \"anthropic\"\nmodel = \"m\"\nprovider = \"openai\"",
                Err(ProviderRefusal::WrongKind {
                    name: "openai".into(),
                    brain: "anthropic",
                    found: "openai",
                    wanted: "anthropic",
                }),
            ),
            (
                &hive,
                "kind = \"claude-code\"\nmodel = \"claude-c\"",
                Err(ProviderRefusal::ModelNotAllowed {
                    name: "anthropic".into(),
                    model: "claude-c".into(),
                    allowed: "claude-a, claude-b".into(),
                }),
            ),
        ];
        for (c, text, want) in cases {
            let got = c
                .provider_for(&brain(text))
                .map(|p| p.map(|p| p.name.as_str()));
            assert_eq!(got, want, "{text}");
        }
        assert_eq!(
            ProviderRefusal::NoneDeclared {
                default: "anthropic"
            }
            .to_string(),
            "no [providers.anthropic] in hive.toml: it cannot think until one is declared"
        );
    }

    #[test]
    fn key_files_are_read_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok.key");
        std::fs::write(&ok, "  sk-test-123\n").unwrap();
        assert_eq!(read_key_file(&ok).expect("read"), "sk-test-123");
        let big = dir.path().join("big.key");
        std::fs::write(&big, vec![b'k'; MAX_KEY_FILE as usize + 1]).unwrap();
        let empty = dir.path().join("empty.key");
        std::fs::write(&empty, "\n").unwrap();
        let binary = dir.path().join("bin.key");
        std::fs::write(&binary, [0xff, 0xfe]).unwrap();
        for (path, why) in [
            (big, "limit of 65536"),
            (empty, "is empty"),
            (binary, "not UTF-8"),
            (dir.path().join("missing"), "cannot read"),
            (dir.path().to_owned(), "not a regular file"),
            (PathBuf::from("/dev/zero"), "not a regular file"),
        ] {
            let e = format!(
                "{:#}",
                read_key_file(&path).expect_err(&path.display().to_string())
            );
            assert!(e.contains(why), "{}: {e}", path.display());
        }
    }
}
