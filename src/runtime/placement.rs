//! Where an agent runs: in a sandbox, unsandboxed (as a uid of its own when the hive is root),
//! started by someone else, or not at all. A pure decision over what the config asks, what the
//! machine offers and what the agent runs; the rules:
//!
//! - `external`: someone else starts the harness; the core only serves its socket.
//! - `bwrap` (the default), where a sandbox can run: every agent in its sandbox.
//! - Otherwise (`process` asked for, or no sandbox can run here), unsandboxed. An agent that runs
//!   code of its own (a `command` brain, Claude Code's built-in tools, declared MCP servers) is
//!   refused unless `runtime.allow_unsandboxed = true`: unsandboxed, that code reads whatever its
//!   uid can. Agents that run only the hive's code (scripted, model brains without servers,
//!   Claude Code without built-in tools) run unsandboxed without the opt-in.
//! - Unsandboxed, an agent runs as a uid of its own whenever the OS allows it (the hive runs as
//!   root and the agent's files are reachable by other uids), so nothing the core owns is
//!   readable by it; else as the hive's own user, which the notices say plainly, but never as
//!   root: a root hive that cannot give an agent a uid of its own does not start it.

use crate::agent_spec::BrainSpec;
use crate::config::RuntimeKind;

/// Why this machine lacks something (a sandbox, uids of its own for agents), said for a
/// person: it is shown in notices and by `hive check`, never branched on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Lacking(String);

impl Lacking {
    pub fn new(why: impl Into<String>) -> Self {
        Self(why.into())
    }
}

impl From<String> for Lacking {
    fn from(why: String) -> Self {
        Self(why)
    }
}

impl From<anyhow::Error> for Lacking {
    /// The whole chain, as `{:#}` shows it.
    fn from(e: anyhow::Error) -> Self {
        Self(format!("{e:#}"))
    }
}

/// What this machine offers, found out at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// A bubblewrap sandbox can run, or why not.
    pub sandbox: Result<(), Lacking>,
    /// Agents can run as uids of their own, or why not.
    pub own_uids: Result<(), Lacking>,
    /// The hive runs as root: an agent without a uid of its own would be root.
    pub as_root: bool,
}

/// Where one agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Sandboxed,
    Unsandboxed {
        own_uid: bool,
    },
    External,
    /// Not started; the reason is said in its room and in `#hive-c0re`.
    Refused(String),
}

/// The code of its own an agent runs, described for a person; `None` if it runs only the hive's.
pub fn own_code(brain: &BrainSpec) -> Option<String> {
    let mut what = Vec::new();
    match brain {
        BrainSpec::Command { command, .. } => what.push(format!(
            "a command brain ({})",
            command.first().map_or("?", String::as_str)
        )),
        BrainSpec::ClaudeCode { builtin_tools, .. } if !builtin_tools.is_empty() => {
            what.push(format!(
                "Claude Code's built-in tools ({})",
                builtin_tools.join(", ")
            ))
        }
        _ => {}
    }
    if let Some(servers) = brain.mcp_servers().filter(|s| !s.is_empty()) {
        let names: Vec<&str> = servers.keys().map(String::as_str).collect();
        what.push(format!("declared MCP servers ({})", names.join(", ")));
    }
    (!what.is_empty()).then(|| what.join(" and "))
}

/// Where an agent whose own code is `own_code` runs (see the module doc for the rules).
pub fn place(
    kind: RuntimeKind,
    allow_unsandboxed: bool,
    host: &Host,
    own_code: Option<&str>,
) -> Placement {
    let why_unsandboxed = match (kind, &host.sandbox) {
        (RuntimeKind::External, _) => return Placement::External,
        (RuntimeKind::Bwrap, Ok(())) => return Placement::Sandboxed,
        (RuntimeKind::Bwrap, Err(why)) => format!("no sandbox can run here ({why})"),
        (RuntimeKind::NixosContainer, Ok(())) => return Placement::Sandboxed,
        (RuntimeKind::NixosContainer, Err(why)) => {
            format!("no NixOS container can run here ({why})")
        }
        (RuntimeKind::Process, _) => "runtime.kind = \"process\" runs agents unsandboxed".into(),
    };
    if let Some(code) = own_code
        && !allow_unsandboxed
    {
        return Placement::Refused(format!(
            "it runs code of its own ({code}) and {why_unsandboxed}; set runtime.allow_unsandboxed = true in hive.toml to run it anyway ({})",
            gives_away(host)
        ));
    }
    match &host.own_uids {
        Ok(()) => Placement::Unsandboxed { own_uid: true },
        // Never an agent as root, whatever the opt-in says.
        Err(why) if host.as_root => Placement::Refused(format!(
            "{why_unsandboxed}, and it would run as root: {why}"
        )),
        Err(_) => Placement::Unsandboxed { own_uid: false },
    }
}

/// What running unsandboxed gives away on this host, for the notices.
pub fn gives_away(host: &Host) -> String {
    match &host.own_uids {
        Ok(()) => "it would run as a uid of its own: it can read every file other users can read and reach every local port, but none of the hive's own files".into(),
        Err(why) => format!(
            "it would run as the hive's own user ({why}): it could read the operator's password, the appservice tokens and the core's database, and act as any agent"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_table() {
        let ok = || Ok(());
        let no = |w: &str| Err(Lacking::new(w));
        let host = |sandbox: Result<(), Lacking>, uids: Result<(), Lacking>| Host {
            sandbox,
            own_uids: uids,
            as_root: false,
        };
        use Placement::*;
        use RuntimeKind::*;
        let code = Some("a command brain (./x)");
        let cases: Vec<(RuntimeKind, bool, Host, Option<&str>, Placement)> = vec![
            (Bwrap, false, host(ok(), ok()), code, Sandboxed),
            (Bwrap, false, host(ok(), no("not root")), None, Sandboxed),
            (
                RuntimeKind::External,
                false,
                host(no("x"), no("x")),
                code,
                Placement::External,
            ),
            // No sandbox: the hive's own code runs; code of the agent's own needs the opt-in.
            (
                Bwrap,
                false,
                host(no("no bwrap"), ok()),
                None,
                Unsandboxed { own_uid: true },
            ),
            (
                Bwrap,
                false,
                host(no("no bwrap"), no("not root")),
                None,
                Unsandboxed { own_uid: false },
            ),
            (
                Bwrap,
                true,
                host(no("no bwrap"), ok()),
                code,
                Unsandboxed { own_uid: true },
            ),
            (
                Process,
                true,
                host(ok(), no("not root")),
                code,
                Unsandboxed { own_uid: false },
            ),
            (
                Process,
                false,
                host(ok(), ok()),
                None,
                Unsandboxed { own_uid: true },
            ),
        ];
        for (kind, allow, h, code, want) in cases {
            assert_eq!(
                place(kind, allow, &h, code),
                want,
                "{kind:?} {allow} {h:?} {code:?}"
            );
        }
        let refused = place(Bwrap, false, &host(no("no bwrap"), no("not root")), code);
        let Refused(why) = refused else {
            panic!("{refused:?}")
        };
        assert!(why.contains("no sandbox can run here (no bwrap)"), "{why}");
        assert!(why.contains("runtime.allow_unsandboxed = true"), "{why}");
        assert!(
            why.contains("the operator's password"),
            "says what it gives away: {why}"
        );
        assert!(matches!(
            place(Process, false, &host(ok(), ok()), code),
            Refused(_)
        ));
        // A root hive that cannot give an agent a uid of its own never runs it as root.
        let root = Host {
            as_root: true,
            ..host(no("no bwrap"), no("/root is 0700"))
        };
        for (allow, code) in [(true, code), (false, None)] {
            let p = place(Bwrap, allow, &root, code);
            let Refused(why) = &p else { panic!("{p:?}") };
            assert!(why.contains("it would run as root: /root is 0700"), "{why}");
        }
    }

    #[test]
    fn what_counts_as_code_of_its_own() {
        let spec = |text: &str| {
            let dir = std::path::Path::new("/nonexistent/bots/x");
            crate::agent_spec::AgentSpec::parse(
                crate::agent_spec::AgentName::parse("x").unwrap(),
                dir,
                &dir.join("agent.toml"),
                text,
            )
            .unwrap()
            .brain
        };
        let cases = [
            ("[brain]\nkind = \"scripted\"\n", None),
            ("[brain]\nkind = \"claude-code\"\n", None),
            (
                "[brain]\nkind = \"claude-code\"\nbuiltin_tools = [\"Bash\", \"Read\"]\n",
                Some("Claude Code's built-in tools (Bash, Read)"),
            ),
            (
                "[brain]\nkind = \"command\"\ncommand = [\"./bot.py\"]\n",
                Some("a command brain (./bot.py)"),
            ),
            (
                "[brain]\nkind = \"openai\"\nmodel = \"m\"\n[brain.mcp_servers.files]\ncommand = [\"srv\"]\n",
                Some("declared MCP servers (files)"),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(own_code(&spec(text)).as_deref(), want, "{text}");
        }
    }
}
