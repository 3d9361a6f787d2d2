//! Hives whose homeservers federate on loopback: each is `localhost:<port>` with a TLS
//! federation listener on that port, its certificate signed by a CA the test generates (with the
//! Synapse venv's Python `cryptography`, which Synapse itself depends on: no Rust dependency for
//! tests alone), and trusted by every test homeserver through `federation_custom_ca_list`.

use std::path::{Path, PathBuf};
use std::process::Command;

use hyperhive::homeserver::{self, FEDERATION_TEST_OVERRIDES, Layout};
use tempfile::TempDir;

use super::{TestHive, free_port, venv};

/// Generates `ca.pem` and, per name, `<name>.pem` + `<name>.key`: a leaf for `localhost` and
/// 127.0.0.1, signed by the CA. argv: the directory, then the names.
const MAKE_CERTS_PY: &str = r#"
import datetime, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
import ipaddress

out, names = sys.argv[1], sys.argv[2:]
now = datetime.datetime.now(datetime.timezone.utc)
start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)

def pem_key(k):
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())

ca_key = ec.generate_private_key(ec.SECP256R1())
ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hyperhive test CA")])
ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
      .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
      .not_valid_before(start).not_valid_after(end)
      .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
      .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                   content_commitment=False, key_encipherment=False,
                                   data_encipherment=False, key_agreement=False,
                                   encipher_only=False, decipher_only=False), critical=True)
      .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
      .sign(ca_key, hashes.SHA256()))
open(f"{out}/ca.pem", "wb").write(ca.public_bytes(serialization.Encoding.PEM))
for n in names:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    open(f"{out}/{n}.pem", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
    open(f"{out}/{n}.key", "wb").write(pem_key(key))
"#;

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
        let out = Command::new(layout.python())
            .arg("-c")
            .arg(MAKE_CERTS_PY)
            .arg(dir.path())
            .args(hives)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cannot make the test certificates: {}",
            String::from_utf8_lossy(&out.stderr)
        );
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
