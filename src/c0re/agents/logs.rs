//! `get_logs`: the end of an agent's log (`agents/<name>/agent.log`, the harness's output as the
//! core copied it), through the secret filter. A manager may read any agent's, every agent its
//! own ([`may_read_logs`]); each read is in the audit. The operator's `hive logs` reads the same
//! way ([`tail_of`]).

use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::configrepo::AgentDirs;

use super::tool_spec::ToolError;

/// Lines `get_logs` answers when none are asked for, and at most.
pub const DEFAULT_LINES: usize = 100;
pub const MAX_LINES: usize = 500;
/// The most of the log's end that is read (a line is rarely this long).
const MAX_BYTES: u64 = 256 << 10;

/// Why a log cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LogRead {
    /// Something else than a regular file is where the log should be (a symlink planted there).
    #[error("the log is not a regular file")]
    NotAFile,
    #[error("{0}")]
    Io(std::io::Error),
}

/// The last `lines` lines of the log at `path` (at most its last `max_bytes`); `None` when there
/// is no log yet. A log that is not a regular file is refused, never followed.
pub fn tail_of(
    path: &std::path::Path,
    lines: usize,
    max_bytes: u64,
) -> Result<Option<String>, LogRead> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => {}
        Ok(_) => return Err(LogRead::NotAFile),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogRead::Io(e)),
    }
    crate::runtime::log::tail(path, lines, max_bytes)
        .map(Some)
        .map_err(LogRead::Io)
}

/// Whether `caller` may read `target`'s log: its own, or any when it is a manager.
pub fn may_read_logs(managers: &[AgentName], caller: &AgentName, target: &AgentName) -> bool {
    caller == target || managers.contains(caller)
}

impl Core {
    /// The last `lines` lines of `agent`'s log, for `caller`.
    pub(super) fn get_logs(
        &self,
        caller: &AgentName,
        agent: &str,
        lines: Option<usize>,
    ) -> Result<String, ToolError> {
        let result = self.read_logs(caller, agent, lines);
        match &result {
            Ok(_) => self.audit_call(caller, "get_logs", Some(agent), None, "read", None),
            Err(e) => self.audit_call(
                caller,
                "get_logs",
                Some(agent),
                None,
                "refused",
                Some(&e.to_string()),
            ),
        }
        result
    }

    fn read_logs(
        &self,
        caller: &AgentName,
        agent: &str,
        lines: Option<usize>,
    ) -> Result<String, ToolError> {
        let target = self.agent_named(agent)?;
        if !may_read_logs(&self.cfg().managers, caller, &target) {
            return Err(ToolError::Refused(format!(
                "{caller} may read its own log only: another agent's is for managers (approvals.managers in hive.toml)"
            )));
        }
        let lines = lines.unwrap_or(DEFAULT_LINES).clamp(1, MAX_LINES);
        let path = AgentDirs::new(self.data_dir(), &target).log();
        match tail_of(&path, lines, MAX_BYTES) {
            Ok(Some(text)) => Ok(self.shown(&text)),
            Ok(None) => Ok(format!("({target} has no log yet)")),
            Err(LogRead::NotAFile) => Err(ToolError::Refused(format!(
                "{target}'s log is not a regular file"
            ))),
            Err(LogRead::Io(e)) => Err(ToolError::Refused(
                self.shown(&format!("cannot read {target}'s log: {e}")),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_is_read_from_its_end_and_never_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("agent.log");
        assert!(matches!(tail_of(&log, 10, 1 << 20), Ok(None)), "no log yet");
        std::fs::write(&log, "one\ntwo\nthree\n").unwrap();
        assert_eq!(
            tail_of(&log, 2, 1 << 20).unwrap().as_deref(),
            Some("two\nthree")
        );
        let link = dir.path().join("linked.log");
        std::os::unix::fs::symlink(&log, &link).unwrap();
        assert!(matches!(tail_of(&link, 2, 1 << 20), Err(LogRead::NotAFile)));
        assert!(matches!(
            tail_of(dir.path(), 2, 1 << 20),
            Err(LogRead::NotAFile)
        ));
    }

    #[test]
    fn who_may_read_whose_logs() {
        let n = |s: &str| AgentName::parse(s).unwrap();
        let managers = [n("hm1nd")];
        struct Case {
            name: &'static str,
            caller: &'static str,
            target: &'static str,
            want: bool,
        }
        let cases = [
            Case {
                name: "an agent its own",
                caller: "echo",
                target: "echo",
                want: true,
            },
            Case {
                name: "an agent another's",
                caller: "echo",
                target: "argus",
                want: false,
            },
            Case {
                name: "a manager another's",
                caller: "hm1nd",
                target: "echo",
                want: true,
            },
            Case {
                name: "a manager its own",
                caller: "hm1nd",
                target: "hm1nd",
                want: true,
            },
        ];
        for c in cases {
            assert_eq!(
                may_read_logs(&managers, &n(c.caller), &n(c.target)),
                c.want,
                "{}",
                c.name
            );
        }
    }
}
