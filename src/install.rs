//! Installing the pinned tools `hive up` needs beside Synapse: the Claude Code CLI, from npm.
//!
//! Like the Synapse venv (`crate::homeserver::ensure_installed`), the CLI is installed once into
//! the data dir, at exactly the version hyperhive is tested with, under a lock so that two hives
//! (or parallel tests sharing a cache) do not race, and reused on every later run. Whether it is
//! there is decided by the installed package's own `package.json`, never by a display string.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::agent_spec::AgentSpec;
use crate::brain::claude_code::CLI_VERSION;

/// The npm package of the Claude Code CLI.
pub const CLAUDE_CODE_PACKAGE: &str = "@anthropic-ai/claude-code";

/// Where the pinned CLI is installed under `data_dir`: `<data>/claude-code/<CLI_VERSION>/`.
pub fn claude_code_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("claude-code").join(CLI_VERSION)
}

/// The agents whose brain is the Claude Code CLI, by name (the ones that need it installed).
pub fn claude_code_agents(specs: &[AgentSpec]) -> Vec<String> {
    specs
        .iter()
        .filter(|s| s.brain.kind() == "claude-code")
        .map(|s| s.name.to_string())
        .collect()
}

/// The `version` of an npm package's `package.json` text, if it has one.
pub fn package_version(package_json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(package_json).ok()?;
    v.get("version")?.as_str().map(str::to_owned)
}

/// Whether `dir` holds the pinned CLI: its package is at `version` and its executable is there.
pub fn is_installed(dir: &Path, version: &str) -> bool {
    let package = dir
        .join("node_modules")
        .join(CLAUDE_CODE_PACKAGE)
        .join("package.json");
    std::fs::read_to_string(package)
        .ok()
        .and_then(|text| package_version(&text))
        .as_deref()
        == Some(version)
        && claude_bin(dir).is_file()
}

fn claude_bin(dir: &Path) -> PathBuf {
    dir.join("node_modules").join(".bin").join("claude")
}

/// The pinned CLI if it is already installed under `data_dir` (installs nothing): for `hive
/// c0re`, which reuses what an earlier `hive up` installed.
pub fn installed_claude_code(data_dir: &Path) -> Option<PathBuf> {
    let dir = claude_code_dir(data_dir);
    is_installed(&dir, CLI_VERSION)
        .then(|| std::fs::canonicalize(claude_bin(&dir)).ok())
        .flatten()
}

/// Installs the pinned Claude Code CLI into `<data_dir>/claude-code/<CLI_VERSION>/` with npm
/// unless it is already there, and returns the CLI's path (canonical: the executable itself,
/// not npm's `.bin` link). `Ok(None)`: `npm` is not on `PATH`, nothing was installed.
pub async fn ensure_claude_code(data_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let dir = claude_code_dir(data_dir);
    if !is_installed(&dir, CLI_VERSION) {
        let Some(npm) = crate::fsutil::which("npm") else {
            return Ok(None);
        };
        let parent = dir.parent().expect("claude_code_dir has a parent");
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let lock_path = parent.join(format!(".{CLI_VERSION}.lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await?
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
        let result = install_locked(&npm, &dir).await;
        drop(lock);
        result?;
    }
    let bin = claude_bin(&dir);
    let cli =
        std::fs::canonicalize(&bin).with_context(|| format!("cannot resolve {}", bin.display()))?;
    Ok(Some(cli))
}

async fn install_locked(npm: &Path, dir: &Path) -> anyhow::Result<()> {
    // Another hive may have installed it while this one waited for the lock.
    if is_installed(dir, CLI_VERSION) {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    eprintln!(
        "hive: installing Claude Code {CLI_VERSION} from npm into {} (first run only)…",
        dir.display()
    );
    let started = Instant::now();
    let ticker = Ticker::start("Claude Code", started);
    let out = tokio::process::Command::new(npm)
        // A pinned version's metadata never changes: npm's cache answers without asking the
        // registry again when it can (a flaky registry connection costs minutes per package).
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--prefer-offline",
            "--prefix",
        ])
        .arg(dir)
        .arg(format!("{CLAUDE_CODE_PACKAGE}@{CLI_VERSION}"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("cannot run {}", npm.display()))?;
    drop(ticker);
    if !out.status.success() {
        bail!(
            "npm install {CLAUDE_CODE_PACKAGE}@{CLI_VERSION} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if !is_installed(dir, CLI_VERSION) {
        bail!(
            "npm install {CLAUDE_CODE_PACKAGE}@{CLI_VERSION} succeeded but {} holds no such version with a `claude` executable",
            dir.display()
        );
    }
    eprintln!(
        "hive: Claude Code {CLI_VERSION} installed in {} s",
        started.elapsed().as_secs()
    );
    Ok(())
}

/// Prints `hive: … still installing <what> (N s)` every 10 s until dropped.
pub(crate) struct Ticker(tokio::task::JoinHandle<()>);

impl Ticker {
    pub(crate) fn start(what: &'static str, started: Instant) -> Self {
        Self(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                eprintln!(
                    "hive: … still installing {what} ({} s)",
                    started.elapsed().as_secs()
                );
            }
        }))
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_comes_from_package_json() {
        for (text, want) in [
            (r#"{"name": "x", "version": "2.1.330"}"#, Some("2.1.330")),
            (r#"{"name": "x"}"#, None),
            (r#"{"version": 2}"#, None),
            ("not json", None),
            ("", None),
        ] {
            assert_eq!(package_version(text).as_deref(), want, "{text:?}");
        }
    }

    fn install(dir: &Path, version: &str, bin: bool) {
        let pkg = dir.join("node_modules").join(CLAUDE_CODE_PACKAGE);
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(
            pkg.join("package.json"),
            format!(r#"{{"name": "{CLAUDE_CODE_PACKAGE}", "version": "{version}"}}"#),
        )
        .unwrap();
        if bin {
            std::fs::create_dir_all(dir.join("node_modules/.bin")).unwrap();
            std::fs::write(claude_bin(dir), "#!/bin/sh\n").unwrap();
        }
    }

    #[test]
    fn installed_means_the_pinned_version_with_its_executable() {
        for (version, bin, want) in [
            (CLI_VERSION, true, true),
            (CLI_VERSION, false, false),
            ("2.0.0", true, false),
        ] {
            let d = tempfile::tempdir().unwrap();
            install(d.path(), version, bin);
            assert_eq!(
                is_installed(d.path(), CLI_VERSION),
                want,
                "{version} bin={bin}"
            );
        }
        let empty = tempfile::tempdir().unwrap();
        assert!(!is_installed(empty.path(), CLI_VERSION));
    }

    #[tokio::test]
    async fn an_installed_cli_is_reused_and_resolved() {
        let data = tempfile::tempdir().unwrap();
        let dir = claude_code_dir(data.path());
        assert!(dir.ends_with(format!("claude-code/{CLI_VERSION}")));
        assert_eq!(installed_claude_code(data.path()), None);
        install(&dir, CLI_VERSION, true);
        let want = Some(std::fs::canonicalize(claude_bin(&dir)).unwrap());
        assert_eq!(ensure_claude_code(data.path()).await.unwrap(), want);
        assert_eq!(installed_claude_code(data.path()), want);
    }

    #[test]
    fn only_claude_code_agents_need_the_cli() {
        let spec = |name: &str, toml: &str| {
            let dir = Path::new("/bots").join(name);
            AgentSpec::parse(
                crate::agent_spec::AgentName::parse(name).unwrap(),
                &dir,
                &dir.join("agent.toml"),
                toml,
            )
            .unwrap()
        };
        let specs = [
            spec("hello", "[brain]\nkind = \"scripted\"\n"),
            spec("hm1nd", "[brain]\nkind = \"claude-code\"\n"),
            spec("argus", "[brain]\nkind = \"claude-code\"\n"),
        ];
        assert_eq!(claude_code_agents(&specs), ["hm1nd", "argus"]);
        assert!(claude_code_agents(&specs[..1]).is_empty());
    }
}
