//! `hive bench`: placeholder replaced below.
use std::process::ExitCode;
pub async fn run(_args: crate::cli::BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("unfinished")
}
