//! What `hive bench` needs of its host: a working directory, the Synapse venv, the operator's
//! login, and a process's memory and CPU as /proc says them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use matrix_sdk::Client;

use crate::homeserver;

/// The operator, logged in.
pub(super) async fn login(creds: &homeserver::OperatorCredentials) -> anyhow::Result<Client> {
    let client = Client::builder()
        .homeserver_url(&creds.homeserver)
        .build()
        .await?;
    let localpart = creds
        .user_id
        .trim_start_matches('@')
        .split(':')
        .next()
        .unwrap_or_default();
    client
        .matrix_auth()
        .login_username(localpart, &creds.password)
        .send()
        .await?;
    Ok(client)
}

pub(super) fn proc_rss_mb(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .context("no VmRSS")?
        .parse()?;
    Ok(kb / 1024.0)
}

pub(super) fn proc_cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').context("bad stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

/// The Synapse venv shared with the tests: `~/.cache/hyperhive/synapse-<version>`.
pub fn default_cache_venv() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join(".cache")
        });
    cache
        .join("hyperhive")
        .join(format!("synapse-{}", crate::config::SYNAPSE_VERSION))
}

/// A working directory removed at the end unless the user chose it.
pub(super) struct WorkDir {
    pub(super) path: PathBuf,
    remove: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub(super) fn tempfile_dir(chosen: Option<&Path>) -> anyhow::Result<WorkDir> {
    match chosen {
        Some(p) => {
            std::fs::create_dir_all(p)?;
            Ok(WorkDir {
                path: p.canonicalize()?,
                remove: false,
            })
        }
        None => {
            let p = std::env::temp_dir().join(format!("hyperhive-bench-{}", std::process::id()));
            std::fs::create_dir_all(&p)?;
            Ok(WorkDir {
                path: p,
                remove: true,
            })
        }
    }
}
