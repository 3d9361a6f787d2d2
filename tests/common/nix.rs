//! `nix-instantiate` for the Nix tests (tests/nix.rs): Debian's `nix-bin`, installed with apt
//! when it is missing and the test runs as root with apt-get (as the browser tests install
//! Chromium); otherwise the test fails with the command to run. A Nix test that skipped itself
//! would pass without checking anything.
#![allow(dead_code)]

use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

/// What `.ci/run` installs.
pub const PACKAGES: [&str; 1] = ["nix-bin"];

fn present() -> bool {
    Command::new("nix-instantiate")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Finds `nix-instantiate`, installing `nix-bin` when root with apt; else fails saying how.
pub fn ensure_installed() {
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if present() {
        return;
    }
    super::apt::install(
        &PACKAGES,
        "the Nix tests need nix-instantiate (Debian's nix-bin)",
    );
    assert!(
        present(),
        "nix-bin is installed but nix-instantiate does not run"
    );
}

/// Runs `nix-instantiate` with `args` (no nixbld group needed: pure evaluation only).
pub fn instantiate(args: &[&str]) -> Output {
    ensure_installed();
    Command::new("nix-instantiate")
        .args(args)
        .env("NIX_CONFIG", "build-users-group =")
        .output()
        .expect("nix-instantiate runs")
}
