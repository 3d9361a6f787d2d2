//! Federation in `hive.toml`: the hive's own name, `[[peers]]` and the embedded homeserver's
//! `[federation]` listener, validated into [`HiveName`], [`Peer`] and [`Federation`].
//!
//! Rules (each refusal names its key):
//! - with peers, `hive.name` and every `peers[i].hive` are `[a-z][a-z0-9_-]{0,31}`; a peer's
//!   differs from ours (without peers `hive.name` is any text: it names the space)
//!   and from every other peer's.
//! - `peers[i].server_name` is a server name, not an IP literal (Synapse refuses those for
//!   private addresses, and certificates rarely name one), not ours, and not another peer's.
//! - `peers[i].agents`: each `local` and every `remote` passes [`AgentName::parse`]; a `local`
//!   appears once per peer. No line: no agent talks with that hive.
//! - `[federation]` is for the embedded homeserver only, and only with peers (without peers
//!   nothing federates: no listener, an empty allow-list). An embedded homeserver with peers
//!   needs it: `tls_cert` and `tls_key` are required, `port` must equal the port in
//!   `homeserver.server_name` when that has one (peers connect to exactly that port) and must
//!   not be the client or appservice port.
//! - With peers, our own server name is not an IP literal either.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use ruma::{OwnedServerName, OwnedUserId, ServerName, UserId};

use super::{ConfigError, RawFederation, RawPeer};
use crate::agent_spec::AgentName;

/// A peer's `bot` when it names none: the default `appservice.sender_localpart`.
pub const DEFAULT_BOT_LOCALPART: &str = "hive";

/// The federation port when the server name has none (the Matrix default).
pub const DEFAULT_FEDERATION_PORT: u16 = 8448;

pub use crate::agent_spec::HiveName;

/// The embedded homeserver's TLS federation listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Federation {
    pub port: u16,
    pub bind: Vec<IpAddr>,
    /// Absolute paths (relative ones are relative to hive.toml).
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// Trusted instead of the system's CAs for peers' certificates (Synapse's
    /// `federation_custom_ca_list`).
    pub ca: Option<PathBuf>,
}

/// A declared remote hive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub hive: HiveName,
    pub server_name: OwnedServerName,
    /// Local agent → the remote agents it may talk with.
    pub agents: BTreeMap<AgentName, Vec<AgentName>>,
    /// Its core's user (`@<peers[i].bot>:<server_name>`): invited into the peer room.
    pub bot: OwnedUserId,
}

impl Peer {
    /// Whether `local` may talk with `remote` of this peer (both directions are declared
    /// here: the remote hive declares its own side).
    pub fn allows(&self, local: &AgentName, remote: &AgentName) -> bool {
        self.agents.get(local).is_some_and(|r| r.contains(remote))
    }
}

/// What validation knows of the hive itself.
pub(super) struct Own<'a> {
    pub server_name: Option<&'a ServerName>,
    pub hive: Option<&'a HiveName>,
    pub embedded: bool,
    pub homeserver_port: u16,
    pub listen: SocketAddr,
}

/// Validates `[federation]` and `[[peers]]`, pushing every error into `errs`.
pub(super) fn validate(
    raw_fed: Option<RawFederation>,
    raw_peers: Vec<RawPeer>,
    own: &Own<'_>,
    resolve: impl Fn(PathBuf) -> PathBuf,
    errs: &mut Vec<ConfigError>,
) -> (Option<Federation>, Vec<Peer>) {
    let mut err = |key: String, message: String| {
        errs.push(ConfigError {
            key: key.into(),
            message,
        })
    };
    let declared = !raw_peers.is_empty();
    let mut peers: Vec<Peer> = Vec::new();
    for (i, raw) in raw_peers.into_iter().enumerate() {
        let hive = match HiveName::parse(&raw.hive) {
            Ok(h) if Some(&h) == own.hive => {
                err(
                    format!("peers[{i}].hive"),
                    format!("{h:?} is this hive's own name (hive.name)"),
                );
                None
            }
            Ok(h) if peers.iter().any(|p| p.hive == h) => {
                err(
                    format!("peers[{i}].hive"),
                    format!("{h:?} is declared twice"),
                );
                None
            }
            Ok(h) => Some(h),
            Err(e) => {
                err(format!("peers[{i}].hive"), e);
                None
            }
        };
        let server_name = match ServerName::parse(&raw.server_name) {
            Err(e) => {
                err(
                    format!("peers[{i}].server_name"),
                    format!("{:?} is not a server name: {e}", raw.server_name),
                );
                None
            }
            Ok(s) if s.is_ip_literal() => {
                err(
                    format!("peers[{i}].server_name"),
                    format!(
                        "{s:?} is an IP literal: give the peer a DNS name (on one machine, localhost:<port>)"
                    ),
                );
                None
            }
            Ok(s) if Some(&*s) == own.server_name => {
                err(
                    format!("peers[{i}].server_name"),
                    format!("{s:?} is this hive's own server name"),
                );
                None
            }
            Ok(s) if peers.iter().any(|p| p.server_name == s) => {
                err(
                    format!("peers[{i}].server_name"),
                    format!("{s:?} is declared for two peers"),
                );
                None
            }
            Ok(s) => Some(s),
        };
        let mut agents: BTreeMap<AgentName, Vec<AgentName>> = BTreeMap::new();
        for line in raw.agents {
            let key = format!("peers[{i}].agents");
            let local = match AgentName::parse(&line.local) {
                Ok(n) => n,
                Err(e) => {
                    err(key, format!("local: {e}"));
                    continue;
                }
            };
            let mut remote = Vec::new();
            for r in &line.remote {
                match AgentName::parse(r) {
                    Ok(n) if !remote.contains(&n) => remote.push(n),
                    Ok(_) => {}
                    Err(e) => err(key.clone(), format!("remote of {local}: {e}")),
                }
            }
            if agents.contains_key(&local) {
                err(key, format!("local {local:?} has two lines: merge them"));
                continue;
            }
            agents.insert(local, remote);
        }
        let bot_localpart = raw.bot.as_deref().unwrap_or(DEFAULT_BOT_LOCALPART);
        if let (Some(hive), Some(server_name)) = (hive, server_name) {
            match UserId::parse(format!("@{bot_localpart}:{server_name}")) {
                Ok(bot) if !bot_localpart.is_empty() && !bot_localpart.contains(':') => {
                    peers.push(Peer {
                        hive,
                        server_name,
                        agents,
                        bot,
                    })
                }
                _ => err(
                    format!("peers[{i}].bot"),
                    format!("{bot_localpart:?} is not a user localpart"),
                ),
            }
        }
    }
    if declared
        && let Some(s) = own.server_name
        && s.is_ip_literal()
    {
        err(
            "homeserver.server_name".into(),
            format!(
                "{s:?} is an IP literal: peers need a DNS name (on one machine, localhost:<port>)"
            ),
        );
    }
    let federation = match (raw_fed, own.embedded, declared) {
        (None, true, true) => {
            err(
                "federation".into(),
                "required with [[peers]] on an embedded homeserver: port, tls_cert and tls_key of its TLS listener".into(),
            );
            None
        }
        (None, _, _) => None,
        (Some(_), false, _) => {
            err(
                "federation".into(),
                "only for the embedded homeserver: configure your own homeserver's federation (docs/federation.md)".into(),
            );
            None
        }
        (Some(_), true, false) => {
            err(
                "federation".into(),
                "declared without [[peers]]: nothing would federate; add a peer or remove the section".into(),
            );
            None
        }
        (Some(raw), true, true) => listener(raw, own, &resolve, &mut err),
    };
    (federation, peers)
}

fn listener(
    raw: RawFederation,
    own: &Own<'_>,
    resolve: &impl Fn(PathBuf) -> PathBuf,
    err: &mut impl FnMut(String, String),
) -> Option<Federation> {
    let named = own.server_name.and_then(ServerName::port);
    let port = raw.port.or(named).unwrap_or(DEFAULT_FEDERATION_PORT);
    if let Some(named) = named
        && named != port
    {
        err(
            "federation.port".into(),
            format!(
                "{port} differs from the port in homeserver.server_name ({named}): peers connect to {named}"
            ),
        );
    }
    if port == own.homeserver_port || port == own.listen.port() {
        err(
            "federation.port".into(),
            format!("{port} is already the client (homeserver.port) or appservice port"),
        );
    }
    let tls_cert = raw.tls_cert.map(resolve);
    let tls_key = raw.tls_key.map(resolve);
    for (key, v) in [
        ("federation.tls_cert", &tls_cert),
        ("federation.tls_key", &tls_key),
    ] {
        if v.is_none() {
            err(
                key.into(),
                "required: Synapse federates over TLS only (docs/federation.md)".into(),
            );
        }
    }
    let bind = raw
        .bind
        .unwrap_or_else(|| vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]);
    if bind.is_empty() {
        err(
            "federation.bind".into(),
            "at least one address is required".into(),
        );
    }
    Some(Federation {
        port,
        bind,
        tls_cert: tls_cert?,
        tls_key: tls_key?,
        ca: raw.ca.map(resolve),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    fn cfg(text: &str) -> Result<Config, Vec<ConfigError>> {
        Config::validate(toml::from_str(text).expect("test toml parses"), None)
    }

    const LISTENER: &str =
        "[federation]\ntls_cert = \"/tls/cert.pem\"\ntls_key = \"/tls/key.pem\"\n";
    const PEER_B: &str = "[[peers]]\nhive = \"hive-b\"\nserver_name = \"localhost:8483\"\n";

    #[test]
    fn refusals_name_their_key() {
        struct Case {
            name: &'static str,
            toml: String,
            key: &'static str,
        }
        let own = "[hive]\nname = \"hive-a\"\n[homeserver]\nserver_name = \"localhost:8481\"\n";
        let cases = [
            Case {
                name: "a hive with peers named with upper case and a space",
                toml: format!(
                    "[hive]\nname = \"Hive A\"\n[homeserver]\nserver_name = \"localhost:8481\"\n{LISTENER}{PEER_B}"
                ),
                key: "hive.name",
            },
            Case {
                name: "an operator on a peer's server",
                toml: format!(
                    "{own}[operators]\nusers = [\"@boss:localhost:8483\"]\n{LISTENER}{PEER_B}"
                ),
                key: "operators.users",
            },
            Case {
                name: "a peer named like us",
                toml: format!(
                    "{own}{LISTENER}[[peers]]\nhive = \"hive-a\"\nserver_name = \"localhost:8483\"\n"
                ),
                key: "peers[0].hive",
            },
            Case {
                name: "a peer hive name that is not one",
                toml: format!(
                    "{own}{LISTENER}[[peers]]\nhive = \"b/../c\"\nserver_name = \"localhost:8483\"\n"
                ),
                key: "peers[0].hive",
            },
            Case {
                name: "a peer on our own server",
                toml: format!(
                    "{own}{LISTENER}[[peers]]\nhive = \"hive-b\"\nserver_name = \"localhost:8481\"\n"
                ),
                key: "peers[0].server_name",
            },
            Case {
                name: "a malformed server name",
                toml: format!(
                    "{own}{LISTENER}[[peers]]\nhive = \"hive-b\"\nserver_name = \"bad name!\"\n"
                ),
                key: "peers[0].server_name",
            },
            Case {
                name: "an IP-literal peer",
                toml: format!(
                    "{own}{LISTENER}[[peers]]\nhive = \"hive-b\"\nserver_name = \"127.0.0.1:8483\"\n"
                ),
                key: "peers[0].server_name",
            },
            Case {
                name: "the same hive twice",
                toml: format!(
                    "{own}{LISTENER}{PEER_B}[[peers]]\nhive = \"hive-b\"\nserver_name = \"localhost:8485\"\n"
                ),
                key: "peers[1].hive",
            },
            Case {
                name: "the same server twice",
                toml: format!(
                    "{own}{LISTENER}{PEER_B}[[peers]]\nhive = \"hive-c\"\nserver_name = \"localhost:8483\"\n"
                ),
                key: "peers[1].server_name",
            },
            Case {
                name: "a local agent name that is not one",
                toml: format!(
                    "{own}{LISTENER}{PEER_B}agents = [{{ local = \"../etc\", remote = [\"iris\"] }}]\n"
                ),
                key: "peers[0].agents",
            },
            Case {
                name: "a reserved local agent name",
                toml: format!(
                    "{own}{LISTENER}{PEER_B}agents = [{{ local = \"operator\", remote = [\"iris\"] }}]\n"
                ),
                key: "peers[0].agents",
            },
            Case {
                name: "a remote agent name that is not one",
                toml: format!(
                    "{own}{LISTENER}{PEER_B}agents = [{{ local = \"argus\", remote = [\"Iris\"] }}]\n"
                ),
                key: "peers[0].agents",
            },
            Case {
                name: "one local agent on two lines",
                toml: format!(
                    "{own}{LISTENER}{PEER_B}agents = [{{ local = \"argus\", remote = [\"iris\"] }}, {{ local = \"argus\", remote = [\"echo\"] }}]\n"
                ),
                key: "peers[0].agents",
            },
            Case {
                name: "peers on an embedded homeserver without a listener",
                toml: format!("{own}{PEER_B}"),
                key: "federation",
            },
            Case {
                name: "a listener without peers",
                toml: format!("{own}{LISTENER}"),
                key: "federation",
            },
            Case {
                name: "a listener for an external homeserver",
                toml: format!(
                    "[homeserver]\nembedded = false\nurl = \"https://m.example.org/\"\nserver_name = \"example.org\"\n{LISTENER}{PEER_B}"
                ),
                key: "federation",
            },
            Case {
                name: "a port other than the server name's",
                toml: format!("{own}{LISTENER}port = 9000\n{PEER_B}"),
                key: "federation.port",
            },
            Case {
                name: "the client port",
                toml: format!(
                    "[homeserver]\nserver_name = \"example.org\"\n{LISTENER}port = 8008\n{PEER_B}"
                ),
                key: "federation.port",
            },
            Case {
                name: "no certificate",
                toml: format!("{own}[federation]\ntls_key = \"/k.pem\"\n{PEER_B}"),
                key: "federation.tls_cert",
            },
            Case {
                name: "no key",
                toml: format!("{own}[federation]\ntls_cert = \"/c.pem\"\n{PEER_B}"),
                key: "federation.tls_key",
            },
            Case {
                name: "no bind address",
                toml: format!("{own}{LISTENER}bind = []\n{PEER_B}"),
                key: "federation.bind",
            },
            Case {
                name: "our own server name an IP literal with peers",
                toml: format!("[homeserver]\nserver_name = \"127.0.0.1:8481\"\n{LISTENER}{PEER_B}"),
                key: "homeserver.server_name",
            },
        ];
        for c in cases {
            let errs = cfg(&c.toml).expect_err(c.name);
            assert!(
                errs.iter().any(|e| e.key == c.key),
                "{}: wanted {}, got {errs:?}",
                c.name,
                c.key
            );
        }
    }

    #[test]
    fn no_peers_no_federation() {
        // Without peers the name only names the space: any text, as it always was.
        let c = cfg("[hive]\nname = \"Lab Hive\"\n").unwrap();
        assert_eq!(c.hive_name, "Lab Hive");
        let c = cfg("").unwrap();
        assert!(c.peers.is_empty());
        assert_eq!(c.federation, None);
        assert_eq!(c.hive_name.as_str(), "hyperhive");
        assert!(
            c.describe_federation().contains("off"),
            "{}",
            c.describe_federation()
        );
    }

    #[test]
    fn peers_and_listener_typed() {
        let c = cfg(&format!(
            "[hive]\nname = \"hive-a\"\n[homeserver]\nserver_name = \"localhost:8481\"\n{LISTENER}bind = [\"127.0.0.1\"]\nca = \"/tls/ca.pem\"\n{PEER_B}agents = [{{ local = \"argus\", remote = [\"iris\", \"echo\"] }}]\n[[peers]]\nhive = \"hive-c\"\nserver_name = \"c.example.org\"\n"
        ))
        .unwrap();
        let f = c.federation.as_ref().expect("a listener");
        assert_eq!(f.port, 8481, "the server name's port by default");
        assert_eq!(
            f.bind,
            vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(f.ca.as_deref(), Some(std::path::Path::new("/tls/ca.pem")));
        assert_eq!(c.hive_name.as_str(), "hive-a");
        assert_eq!(c.peers.len(), 2);
        let b = &c.peers[0];
        assert_eq!(
            (b.hive.as_str(), b.server_name.as_str()),
            ("hive-b", "localhost:8483")
        );
        let n = |s: &str| crate::agent_spec::AgentName::parse(s).unwrap();
        assert!(b.allows(&n("argus"), &n("iris")));
        assert!(b.allows(&n("argus"), &n("echo")));
        assert!(
            !b.allows(&n("iris"), &n("argus")),
            "the declared direction only"
        );
        assert!(!c.peers[1].allows(&n("argus"), &n("iris")), "default: none");
        // A server name without a port: the Matrix default port.
        let d = cfg(&format!(
            "[homeserver]\nserver_name = \"a.example.org\"\n{LISTENER}{PEER_B}"
        ))
        .unwrap();
        assert_eq!(d.federation.unwrap().port, super::DEFAULT_FEDERATION_PORT);
        // User ids with a port in the server name.
        assert_eq!(c.operators[0].as_str(), "@operator:localhost:8481");
        let argus = c.agent_user_id(&n("argus"));
        assert_eq!(argus.as_str(), "@argus:localhost:8481");
        assert_eq!(c.agent_of(&argus), Some(n("argus")));
        let remote = ruma::UserId::parse("@argus:localhost:8483").unwrap();
        assert_eq!(c.agent_of(&remote), None, "a remote namesake is not ours");
        assert!(
            !c.is_operator(
                ruma::UserId::parse("@operator:localhost:8483")
                    .unwrap()
                    .as_ref()
            )
        );
        let rendered = c.describe_federation();
        assert!(
            rendered.contains(
                "hive-b at localhost:8483 (its core @hive:localhost:8483): argus ↔ iris echo"
            ),
            "{rendered}"
        );
    }
}
