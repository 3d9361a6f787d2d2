//! A certificate authority made for one run, and a `localhost` leaf certificate per hive it
//! signs: for homeservers that federate on loopback (tests/federation.rs, `hive bench`'s
//! federation section). Generated with the Synapse venv's Python `cryptography` (Synapse itself
//! depends on it), so no Rust dependency exists for this alone. Never for a real hive.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use super::Layout;

/// Generates `ca.pem` and, per name, `<name>.pem` + `<name>.key`: a leaf for `localhost` and
/// 127.0.0.1, signed by the CA. argv: the directory, then the names.
pub const MAKE_CERTS_PY: &str = r#"
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

/// Writes `ca.pem` and `<name>.pem` / `<name>.key` for each of `names` into `out`, with the
/// Python of `layout`'s venv (installed already: see [`super::ensure_installed`]).
pub fn make_certs(layout: &Layout, out: &Path, names: &[&str]) -> anyhow::Result<()> {
    let python = layout.python();
    let run = Command::new(&python)
        .arg("-c")
        .arg(MAKE_CERTS_PY)
        .arg(out)
        .args(names)
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !run.status.success() {
        bail!(
            "cannot make the certificates in {}: {}",
            out.display(),
            String::from_utf8_lossy(&run.stderr)
        );
    }
    Ok(())
}
