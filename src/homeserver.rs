//! Provisioning and supervising the hive's local Synapse.
//!
//! `hive up` installs `matrix-synapse` (pinned) from PyPI into a venv, renders
//! `homeserver.yaml` from `synapse-config/`, starts Synapse as a child and waits for `/health`.
//! Everything is reused on the next run: the venv, the signing key, the database, the secrets.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use tokio::process::Child;

use crate::config::{Config, SYNAPSE_VERSION, env};

mod federation;
pub mod testca;
pub use federation::{FEDERATION_TEST_OVERRIDES, FederationPlan};

const HOMESERVER_TEMPLATE: &str = include_str!("../synapse-config/homeserver.yaml");
/// Relaxed rate limits for tests and benchmarks.
pub const TEST_OVERRIDES: &str = include_str!("../synapse-config/test-overrides.yaml");

/// Files of the embedded homeserver under `<data>/synapse/`.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    pub venv: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Self {
        let dir = data_dir.join("synapse");
        // From the environment: made absolute here, where it enters (Synapse runs in `dir`).
        let venv = std::env::var_os(env::SYNAPSE_VENV)
            .map(PathBuf::from)
            .map(|p| std::path::absolute(&p).unwrap_or(p))
            .unwrap_or_else(|| dir.join("venv"));
        Self { dir, venv }
    }

    /// The layout with the venv at an explicit path (tests and benches share one).
    pub fn with_venv(data_dir: &Path, venv: PathBuf) -> Self {
        Self {
            dir: data_dir.join("synapse"),
            venv,
        }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("homeserver.yaml")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("homeserver.log")
    }

    pub fn python(&self) -> PathBuf {
        self.venv.join("bin").join("python")
    }

    fn shared_secret_path(&self) -> PathBuf {
        self.dir.join("registration_shared_secret")
    }

    pub fn shared_secret(&self) -> anyhow::Result<String> {
        let p = self.shared_secret_path();
        Ok(std::fs::read_to_string(&p)
            .with_context(|| format!("cannot read {}", p.display()))?
            .trim()
            .to_owned())
    }
}

/// Installs Synapse into the venv unless the right version is already there. Concurrent callers
/// (parallel tests sharing one venv) wait for each other on a lock file.
pub async fn ensure_installed(layout: &Layout) -> anyhow::Result<()> {
    if installed_version(layout).await.as_deref() == Some(SYNAPSE_VERSION) {
        return Ok(());
    }
    let parent = layout
        .venv
        .parent()
        .context("venv path has no parent")?
        .to_owned();
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let lock_path = parent.join(format!(
        ".{}.lock",
        layout
            .venv
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("venv")
    ));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)?;
    let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock)).await??;
    let result = install_locked(layout).await;
    drop(lock);
    result
}

async fn install_locked(layout: &Layout) -> anyhow::Result<()> {
    if installed_version(layout).await.as_deref() == Some(SYNAPSE_VERSION) {
        return Ok(());
    }
    let python = std::env::var(env::PYTHON).unwrap_or_else(|_| "python3".into());
    eprintln!(
        "hive: installing Synapse {SYNAPSE_VERSION} from PyPI into {} (first run only, about 30 s)…",
        layout.venv.display()
    );
    let started = Instant::now();
    run_quiet(
        tokio::process::Command::new(&python)
            .arg("-m")
            .arg("venv")
            .arg("--clear")
            .arg(&layout.venv),
        "create the Synapse venv",
    )
    .await
    .with_context(|| {
        format!(
            "is `{python}` (Python ≥ 3.10 with venv) installed? set {} to another interpreter",
            env::PYTHON
        )
    })?;
    let mut pip = tokio::process::Command::new(layout.python());
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        "--quiet",
    ])
    .arg(format!("matrix-synapse=={SYNAPSE_VERSION}"));
    let ticker = crate::install::Ticker::start("Synapse", started);
    let r = run_quiet(&mut pip, "install matrix-synapse").await;
    drop(ticker);
    r?;
    // Byte-compile once: Synapse starts about twice as fast with .pyc files. Best effort: a
    // venv without them only starts slower, so a failure is not worth stopping `hive up` for.
    let _ = tokio::process::Command::new(layout.python())
        .args(["-m", "compileall", "-q"])
        .arg(layout.venv.join("lib"))
        .env_remove("PYTHONDONTWRITEBYTECODE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    eprintln!(
        "hive: Synapse {SYNAPSE_VERSION} installed in {} s",
        started.elapsed().as_secs()
    );
    Ok(())
}

/// The installed `matrix-synapse` version, from the package's metadata: `synapse.__version__`
/// is a display string that gains the branch and commit (`1.163.2 (b=main,79f1ff4)`) when the
/// venv lives inside a git work tree (the default `./.hive` of a clone), so it never equals the
/// pinned version there and every start would reinstall.
async fn installed_version(layout: &Layout) -> Option<String> {
    let out = tokio::process::Command::new(layout.python())
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('matrix-synapse'))",
        ])
        .stderr(Stdio::null())
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

async fn run_quiet(cmd: &mut tokio::process::Command, what: &str) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot {what}"))?;
    if !out.status.success() {
        bail!(
            "cannot {what} ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Writes `homeserver.yaml` (and, on first run, the shared secret). `extra` is appended as a
/// second config file when given (test overrides).
pub fn render_config(
    layout: &Layout,
    cfg: &Config,
    registration: &Path,
    extra: Option<&str>,
) -> anyhow::Result<Vec<PathBuf>> {
    let plan = federation::plan(cfg);
    federation::check_files(cfg)?;
    crate::fsutil::private_dir(&layout.dir)?;
    let secret_path = layout.shared_secret_path();
    if !secret_path.exists() {
        crate::fsutil::write_private(&secret_path, crate::proc::random_secret(48).as_bytes())?;
    }
    let q =
        |p: &Path| serde_json::to_string(&p.display().to_string()).expect("a string serialises");
    let qs = |s: &str| serde_json::to_string(s).expect("a string serialises");
    let text = HOMESERVER_TEMPLATE
        .replace("{{server_name}}", &qs(cfg.server_name.as_str()))
        .replace("{{pid_file}}", &q(&layout.dir.join("homeserver.pid")))
        .replace("{{public_baseurl}}", &qs(cfg.homeserver_url.as_str()))
        .replace("{{port}}", &cfg.homeserver_port.to_string())
        .replace("{{database}}", &q(&layout.dir.join("homeserver.db")))
        .replace("{{media_store}}", &q(&layout.dir.join("media")))
        .replace("{{signing_key}}", &q(&layout.dir.join("signing.key")))
        .replace("{{shared_secret_path}}", &q(&secret_path))
        .replace("{{registration}}", &q(registration))
        .replace("{{federation_listener}}", &plan.listener_yaml())
        .replace("{{federation}}", &plan.settings_yaml())
        // Presence is the core's to set (`[console] presence`); off, the homeserver keeps none.
        .replace(
            "{{presence_enabled}}",
            if cfg.console.presence {
                "true"
            } else {
                "false"
            },
        );
    crate::fsutil::write_private(&layout.config(), text.as_bytes())?;
    let mut files = vec![layout.config()];
    if let Some(extra) = extra {
        let p = layout.dir.join("overrides.yaml");
        crate::fsutil::write_private(&p, extra.as_bytes())?;
        files.push(p);
    }
    Ok(files)
}

/// A running Synapse child.
pub struct Synapse {
    child: Child,
    pub url: url::Url,
}

impl Synapse {
    /// Starts Synapse with `configs` and waits until `/health` answers.
    pub async fn start(
        layout: &Layout,
        configs: &[PathBuf],
        url: &url::Url,
    ) -> anyhow::Result<Self> {
        let mut cmd = tokio::process::Command::new(layout.python());
        cmd.args(["-m", "synapse.app.homeserver"]);
        for c in configs {
            cmd.arg("--config-path").arg(c);
        }
        let keygen = layout.dir.join("signing.key");
        if !keygen.exists() {
            let mut gen_cmd = tokio::process::Command::new(layout.python());
            gen_cmd.args(["-m", "synapse.app.homeserver", "--generate-keys"]);
            for c in configs {
                gen_cmd.arg("--config-path").arg(c);
            }
            run_quiet(&mut gen_cmd, "generate Synapse's signing key").await?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(layout.log())?;
        cmd.current_dir(&layout.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            // Its own process group: a Ctrl-C at the terminal (SIGINT to the foreground group)
            // reaches `hive up` alone, which stops Synapse after the core, not before it.
            .process_group(0);
        // Dies with the hive, and only then: forked from the one long-lived spawner thread (a
        // restart runs on a tokio worker, which may later end in the blocking pool).
        let mut child = crate::proc::spawn_tied(cmd)
            .await
            .context("cannot start Synapse")?;
        let health = url.join("health")?;
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "Synapse exited during start-up ({status}); see {}",
                    layout.log().display()
                );
            }
            if let Ok(r) = http
                .get(health.clone())
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && r.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                // Fire and forget: it may have died meanwhile; the error below says what matters.
                let _ = child.kill().await;
                bail!(
                    "Synapse did not become healthy within 90 s; see {}",
                    layout.log().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            child,
            url: url.clone(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits for Synapse to exit on its own (a crash).
    pub async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }

    /// SIGTERM, then SIGKILL after 15 s.
    pub async fn stop(mut self) {
        crate::proc::stop(&mut self.child, Duration::from_secs(15)).await;
    }
}

/// `<data>/operator.json`: how the operator logs in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorCredentials {
    pub homeserver: String,
    pub user_id: String,
    pub password: String,
}

impl OperatorCredentials {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("operator.json")
    }

    pub fn load(data_dir: &Path) -> anyhow::Result<Option<Self>> {
        let p = Self::path(data_dir);
        match std::fs::read(&p) {
            Ok(b) => {
                Ok(Some(serde_json::from_slice(&b).with_context(|| {
                    format!("{} is not valid JSON", p.display())
                })?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
        }
    }
}

/// Creates the first local operator once (shared-secret registration) and writes
/// `operator.json` (mode 0600). Later runs reuse the file.
pub async fn ensure_operator(
    data_dir: &Path,
    layout: &Layout,
    cfg: &Config,
) -> anyhow::Result<OperatorCredentials> {
    if let Some(c) = OperatorCredentials::load(data_dir)? {
        return Ok(c);
    }
    let op = cfg
        .operators
        .iter()
        .find(|o| o.server_name() == cfg.server_name)
        .context("no operator on this hive's own server to create (operators.users)")?;
    let password = crate::proc::random_secret(32);
    register_user(
        &cfg.homeserver_url,
        &layout.shared_secret()?,
        op.localpart(),
        &password,
        false,
    )
    .await
    .with_context(|| format!("cannot create the operator account {op}"))?;
    let creds = OperatorCredentials {
        homeserver: cfg.homeserver_url.to_string(),
        user_id: op.to_string(),
        password,
    };
    crate::fsutil::write_private(
        &OperatorCredentials::path(data_dir),
        &serde_json::to_vec_pretty(&creds)?,
    )?;
    Ok(creds)
}

/// Synapse's shared-secret registration (`/_synapse/admin/v1/register`).
pub async fn register_user(
    hs: &url::Url,
    secret: &str,
    localpart: &str,
    password: &str,
    admin: bool,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let url = hs.join("_synapse/admin/v1/register")?;
    #[derive(Deserialize)]
    struct Nonce {
        nonce: String,
    }
    let nonce: Nonce = serde_json::from_slice(
        &http
            .get(url.clone())
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?,
    )?;
    let mut mac =
        Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("hmac takes any key length");
    mac.update(nonce.nonce.as_bytes());
    mac.update(b"\0");
    mac.update(localpart.as_bytes());
    mac.update(b"\0");
    mac.update(password.as_bytes());
    mac.update(b"\0");
    mac.update(if admin {
        b"admin".as_slice()
    } else {
        b"notadmin".as_slice()
    });
    let digest: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let body = serde_json::json!({ "nonce": nonce.nonce, "username": localpart, "password": password, "admin": admin, "mac": digest });
    let resp = http.post(url).json(&body).send().await?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        bail!("homeserver answered {status}: {text}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[console] presence` decides whether the homeserver keeps presence at all.
    #[test]
    fn presence_follows_the_console_switch() {
        for (toml, want) in [
            ("", "presence:\n  enabled: true\n"),
            (
                "[console]\npresence = false\n",
                "presence:\n  enabled: false\n",
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let hive_toml = dir.path().join("hive.toml");
            std::fs::write(&hive_toml, toml).unwrap();
            let cfg = Config::load(Some(&hive_toml)).unwrap();
            let layout = Layout::new(&dir.path().join("data"));
            let files = render_config(&layout, &cfg, &dir.path().join("reg.yaml"), None).unwrap();
            let yaml = std::fs::read_to_string(&files[0]).unwrap();
            assert!(yaml.contains(want), "{toml:?}: {yaml}");
            assert!(!yaml.contains("{{"), "every placeholder filled");
        }
    }
}
