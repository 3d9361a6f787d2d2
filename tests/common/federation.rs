//! Hives whose homeservers federate on loopback: each is `localhost:<port>` with a TLS
//! federation listener on that port, its certificate signed by a CA the test generates
//! (`homeserver::testca`, shared with `hive bench`), and trusted by every test homeserver
//! through `federation_custom_ca_list`.

use std::path::{Path, PathBuf};

use hyperhive::homeserver::{self, FEDERATION_TEST_OVERRIDES, Layout};
use tempfile::TempDir;

use super::{TestHive, free_port, venv};

/// A CA made for one test, with a `localhost` certificate per hive.
pub struct TestCa {
    dir: TempDir,
}

impl TestCa {
    /// Generates the CA and a leaf for each of `hives` (installing Synapse's venv if needed).
    pub async fn new(hives: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::with_venv(dir.path(), venv());
        homeserver::ensure_installed(&layout).await.unwrap();
        homeserver::testca::make_certs(&layout, dir.path(), hives)
            .unwrap_or_else(|e| panic!("{e:#}"));
        Self { dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `hive`'s certificate and key.
    pub fn leaf(&self, hive: &str) -> (PathBuf, PathBuf) {
        let d: &Path = self.dir.path();
        (d.join(format!("{hive}.pem")), d.join(format!("{hive}.key")))
    }
}

/// A hive's name and federation port, chosen before any hive starts so that each can name the
/// others as peers.
#[derive(Debug, Clone)]
pub struct FedId {
    pub hive: String,
    pub port: u16,
}

impl FedId {
    pub fn new(hive: &str) -> Self {
        Self {
            hive: hive.into(),
            port: free_port(),
        }
    }

    /// `localhost:<port>`: the hive's server name (an IP literal would be refused).
    pub fn server_name(&self) -> String {
        format!("localhost:{}", self.port)
    }
}

impl TestHive {
    /// A hive named `me.hive` on server `me.server_name()`, its TLS federation listener on
    /// loopback, peered with each of `peers` (the `&str` is the peer's `agents = [...]` line, or
    /// empty); `extra` is more hive.toml (whole sections).
    pub async fn federated(
        bots: &[(&str, String)],
        me: &FedId,
        peers: &[(&FedId, &str)],
        ca: &TestCa,
        extra: &str,
    ) -> Self {
        let (cert, key) = ca.leaf(&me.hive);
        let q = |p: &Path| serde_json::to_string(&p.display().to_string()).unwrap();
        let mut toml = format!(
            "[hive]\nname = \"{}\"\n[federation]\nbind = [\"127.0.0.1\"]\ntls_cert = {}\ntls_key = {}\nca = {}\n",
            me.hive,
            q(&cert),
            q(&key),
            q(&ca.ca())
        );
        for (p, agents) in peers {
            toml.push_str(&format!(
                "[[peers]]\nhive = \"{}\"\nserver_name = \"{}\"\n{agents}\n",
                p.hive,
                p.server_name()
            ));
        }
        toml.push_str(extra);
        let synapse = format!(
            "{}\n{FEDERATION_TEST_OVERRIDES}",
            homeserver::TEST_OVERRIDES
        );
        Self::provision(
            bots,
            &format!("server_name = \"{}\"\n", me.server_name()),
            &toml,
            &synapse,
        )
        .await
    }
}
