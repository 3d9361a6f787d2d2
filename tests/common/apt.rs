//! Debian packages a test needs (Chromium for the console's tests, nix-bin for the Nix ones):
//! installed with apt when the test runs as root with apt-get, as `.ci/run` installs them;
//! otherwise the test fails saying what to run. A test that skipped itself for a missing tool
//! would pass without testing anything.

use std::path::Path;
use std::process::{Command, Stdio};

/// The command that installs `packages` (what a person without root runs with sudo).
pub fn command(packages: &[&str]) -> String {
    format!(
        "apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    )
}

/// Installs `packages` (refreshing the package lists once if the first try fails), or fails
/// the test naming `need` and the command when this is not root with apt-get.
pub fn install(packages: &[&str], need: &str) {
    let cmd = command(packages);
    let root = nix::unistd::geteuid().is_root();
    let apt = Path::new("/usr/bin/apt-get").is_file();
    assert!(
        root && apt,
        "{need}: run `sudo {cmd}` (as root with apt-get the test installs it itself)"
    );
    eprintln!("installing {} ({cmd})…", packages.join(", "));
    let run = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .expect("apt-get runs")
    };
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend_from_slice(packages);
    if !run(&args).success() {
        // Stale package lists: refresh once.
        run(&["update", "-qq"]);
        let status = run(&args);
        assert!(status.success(), "`{cmd}` failed ({status})");
    }
}
