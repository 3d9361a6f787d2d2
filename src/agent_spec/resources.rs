//! `[resources]` of agent.toml: what one agent's sandbox may use (memory, CPU, tasks), over the
//! hive's defaults (`[runtime.resources]` of hive.toml). Data only: each runtime enforces them
//! its own way (`docs/runtimes.md`, "Resource limits"), and the NixOS module reads the same
//! keys with `builtins.fromTOML` (`nix/agents.nix`): keep the two readings equal
//! (`tests/nix.rs` compares them).

use serde::Deserialize;

/// The keys as written: `memory = "2G"`, `cpu = "150%"`, `tasks = 512`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawResources {
    /// Bytes, with an optional binary suffix `K`, `M`, `G`, `T` (as systemd's `MemoryMax=`).
    pub memory: Option<String>,
    /// A share of one CPU in percent, `"100%"` one core, `"250%"` two and a half
    /// (as systemd's `CPUQuota=`).
    pub cpu: Option<String>,
    /// Processes and threads together (as systemd's `TasksMax=`).
    pub tasks: Option<u32>,
}

/// What one agent may use, every value set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Resources {
    pub memory_bytes: u64,
    pub cpu_percent: u32,
    pub tasks: u32,
}

/// The hive's defaults when hive.toml says nothing: 2 GiB (Claude Code with a few tools fits),
/// one core, 512 tasks.
pub const DEFAULT: Resources = Resources {
    memory_bytes: 2 << 30,
    cpu_percent: 100,
    tasks: 512,
};

/// Below this an agent's harness cannot start; a typo like `memory = "64"` (bytes) is refused.
pub const MIN_MEMORY: u64 = 32 << 20;
pub const MIN_TASKS: u32 = 16;
pub const MAX_CPU_PERCENT: u32 = 100_000;

/// An agent's `[resources]`, validated; unset keys take the hive's defaults ([`Self::over`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentResources {
    pub memory_bytes: Option<u64>,
    pub cpu_percent: Option<u32>,
    pub tasks: Option<u32>,
}

impl AgentResources {
    /// This agent's values over `defaults`.
    pub fn over(&self, defaults: Resources) -> Resources {
        Resources {
            memory_bytes: self.memory_bytes.unwrap_or(defaults.memory_bytes),
            cpu_percent: self.cpu_percent.unwrap_or(defaults.cpu_percent),
            tasks: self.tasks.unwrap_or(defaults.tasks),
        }
    }
}

/// Validates `raw`; each refusal names its key under `table` (`resources` in agent.toml,
/// `runtime.resources` in hive.toml).
pub fn validate(raw: &RawResources, table: &str) -> Result<AgentResources, Vec<(String, String)>> {
    let mut errors = Vec::new();
    let memory_bytes = raw.memory.as_deref().and_then(|m| match parse_bytes(m) {
        Ok(b) if b >= MIN_MEMORY => Some(b),
        Ok(b) => {
            errors.push((
                format!("{table}.memory"),
                format!(
                    "{b} bytes is less than the {} MiB an agent needs",
                    MIN_MEMORY >> 20
                ),
            ));
            None
        }
        Err(e) => {
            errors.push((format!("{table}.memory"), e));
            None
        }
    });
    let cpu_percent = raw.cpu.as_deref().and_then(|c| match parse_cpu(c) {
        Ok(p) => Some(p),
        Err(e) => {
            errors.push((format!("{table}.cpu"), e));
            None
        }
    });
    let tasks = match raw.tasks {
        Some(t) if t < MIN_TASKS => {
            errors.push((
                format!("{table}.tasks"),
                format!("{t} is fewer than the {MIN_TASKS} tasks a harness needs"),
            ));
            None
        }
        t => t,
    };
    if errors.is_empty() {
        Ok(AgentResources {
            memory_bytes,
            cpu_percent,
            tasks,
        })
    } else {
        Err(errors)
    }
}

/// `"512M"` → 536870912. Binary suffixes (`K` = 1024), no fractions, as systemd reads them.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{s:?}: the unit must be K, M, G or T")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{s:?} is not a size: write bytes, or a whole number with K, M, G or T (\"512M\")"
        ));
    }
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is too large"))?;
    n.checked_mul(1u64 << shift)
        .filter(|b| *b <= 1u64 << 50)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `"150%"` → 150.
pub fn parse_cpu(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let Some(digits) = t.strip_suffix('%') else {
        return Err(format!(
            "{s:?} is not a CPU share: write a percentage of one core (\"100%\", \"250%\")"
        ));
    };
    match digits.parse::<u32>() {
        Ok(p) if (1..=MAX_CPU_PERCENT).contains(&p) => Ok(p),
        _ => Err(format!(
            "{s:?}: the share must be a whole percentage from 1% to {MAX_CPU_PERCENT}%"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let cases: &[(&str, Result<u64, &str>)] = &[
            ("512M", Ok(512 << 20)),
            ("2G", Ok(2 << 30)),
            ("2g", Ok(2 << 30)),
            ("1024K", Ok(1 << 20)),
            ("33554432", Ok(32 << 20)),
            (" 1T ", Ok(1 << 40)),
            ("1.5G", Err("not a size")),
            ("G", Err("not a size")),
            ("", Err("not a size")),
            ("-1M", Err("not a size")),
            ("12Q", Err("the unit must be")),
            ("99999999999T", Err("too large")),
            ("2048T", Err("too large")),
        ];
        for (input, want) in cases {
            match (parse_bytes(input), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, *w, "{input:?}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{input:?}: {e}"),
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn cpu_shares() {
        let cases: &[(&str, Result<u32, &str>)] = &[
            ("100%", Ok(100)),
            ("250%", Ok(250)),
            ("1%", Ok(1)),
            ("0%", Err("whole percentage")),
            ("1.5%", Err("whole percentage")),
            ("100", Err("not a CPU share")),
            ("100001%", Err("whole percentage")),
        ];
        for (input, want) in cases {
            match (parse_cpu(input), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, *w, "{input:?}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{input:?}: {e}"),
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn validation_names_each_key_and_defaults_fill_the_rest() {
        let raw = RawResources {
            memory: Some("64".into()),
            cpu: Some("half".into()),
            tasks: Some(2),
        };
        let errs = validate(&raw, "resources").unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["resources.memory", "resources.cpu", "resources.tasks"]
        );

        let ok = validate(
            &RawResources {
                memory: Some("256M".into()),
                ..Default::default()
            },
            "resources",
        )
        .unwrap();
        assert_eq!(
            ok.over(DEFAULT),
            Resources {
                memory_bytes: 256 << 20,
                ..DEFAULT
            }
        );
        assert_eq!(
            validate(&RawResources::default(), "resources")
                .unwrap()
                .over(DEFAULT),
            DEFAULT
        );
    }
}
