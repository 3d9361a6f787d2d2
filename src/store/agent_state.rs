//! An agent's harness state as the store records it: typed inside the house, its stored string
//! only at the SQL edge (`hive status` reads them back).

/// What the store records about an agent's harness. Written as its [`AgentState::as_str`]
/// (the strings are the stored format: `hive status` reads them back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentState {
    /// Its harness said hello on `c0re.sock`.
    Connected,
    /// Its harness's connection ended.
    Disconnected,
    /// Its harness process was started.
    Running,
    /// Its harness exited cleanly (or was stopped).
    Stopped,
    /// Its harness exited with a failure.
    Crashed,
    /// Its harness crashed too often in a row; it waits for a new config.
    CrashLoop,
    /// Its harness could not be started.
    CannotStart,
    /// The runtime refused to run it (e.g. unsandboxed without the opt-in).
    Refused,
    /// Destroyed, its state kept on disk until a revive or a purge.
    Kept,
}

impl AgentState {
    /// Every state, for tests and listings.
    pub const ALL: [AgentState; 9] = [
        AgentState::Connected,
        AgentState::Disconnected,
        AgentState::Running,
        AgentState::Stopped,
        AgentState::Crashed,
        AgentState::CrashLoop,
        AgentState::CannotStart,
        AgentState::Refused,
        AgentState::Kept,
    ];

    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Connected => "connected",
            AgentState::Disconnected => "disconnected",
            AgentState::Running => "running",
            AgentState::Stopped => "stopped",
            AgentState::Crashed => "crashed",
            AgentState::CrashLoop => "crash-loop",
            AgentState::CannotStart => "cannot-start",
            AgentState::Refused => "refused",
            AgentState::Kept => "kept",
        }
    }
}

impl std::fmt::Display for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored agent state that names none of [`AgentState`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown agent state {0:?}")]
pub struct UnknownState(pub String);

impl std::str::FromStr for AgentState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AgentState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_stored_form() {
        struct Case {
            name: &'static str,
            stored: &'static str,
            want: Result<AgentState, UnknownState>,
        }
        let cases = [
            Case {
                name: "connected",
                stored: "connected",
                want: Ok(AgentState::Connected),
            },
            Case {
                name: "disconnected",
                stored: "disconnected",
                want: Ok(AgentState::Disconnected),
            },
            Case {
                name: "running",
                stored: "running",
                want: Ok(AgentState::Running),
            },
            Case {
                name: "stopped",
                stored: "stopped",
                want: Ok(AgentState::Stopped),
            },
            Case {
                name: "crashed",
                stored: "crashed",
                want: Ok(AgentState::Crashed),
            },
            Case {
                name: "a crash loop has a dash",
                stored: "crash-loop",
                want: Ok(AgentState::CrashLoop),
            },
            Case {
                name: "cannot start has a dash",
                stored: "cannot-start",
                want: Ok(AgentState::CannotStart),
            },
            Case {
                name: "refused",
                stored: "refused",
                want: Ok(AgentState::Refused),
            },
            Case {
                name: "kept",
                stored: "kept",
                want: Ok(AgentState::Kept),
            },
            Case {
                name: "case matters",
                stored: "Running",
                want: Err(UnknownState("Running".into())),
            },
            Case {
                name: "no default for an unknown state",
                stored: "",
                want: Err(UnknownState(String::new())),
            },
        ];
        for c in cases {
            assert_eq!(c.stored.parse::<AgentState>(), c.want, "{}", c.name);
            if let Ok(state) = c.want {
                assert_eq!(state.as_str(), c.stored, "{}", c.name);
            }
        }
        for state in AgentState::ALL {
            assert_eq!(state.as_str().parse(), Ok(state), "{state}");
        }
    }
}
