//! `nix-instantiate` for the Nix tests (tests/nix.rs): Debian's `nix-bin`, installed with apt
//! when it is missing and the test runs as root with apt-get (as the browser tests install
//! Chromium); otherwise the test fails with the command to run. A Nix test that skipped itself
//! would pass without checking anything.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

/// What `.ci/run` installs.
pub const INSTALL: &str = "apt-get install -y --no-install-recommends nix-bin";

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
    let root = nix::unistd::geteuid().is_root();
    let apt = Path::new("/usr/bin/apt-get").is_file();
    assert!(
        root && apt,
        "the Nix tests need nix-instantiate (Debian's nix-bin): run `sudo {INSTALL}` (as root \
         with apt-get it is installed by the test itself)"
    );
    eprintln!("nix: installing nix-bin ({INSTALL})…");
    let run = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .expect("apt-get runs")
    };
    let install = ["install", "-y", "--no-install-recommends", "nix-bin"];
    if !run(&install).success() {
        run(&["update", "-qq"]);
        let status = run(&install);
        assert!(status.success(), "`{INSTALL}` failed ({status})");
    }
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
