//! Logging: `tracing` to stderr (`RUST_LOG` wins), colours only on a terminal, and every line
//! passed through the secret filter once the core knows its secrets (a log line never carries
//! a token, a key or a password, whatever a message, an error or a crash log held).

use std::io::Write;
use std::sync::RwLock;

use tracing_subscriber::EnvFilter;

use crate::secrets::SecretFilter;

/// The filter log lines pass through: set once by the core ([`guard_secrets`]). Logging is
/// process-wide, so this is too.
static FILTER: RwLock<Option<SecretFilter>> = RwLock::new(None);

/// Sets up logging for `hive` and `hive-agent`.
pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,hyperhive=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| RedactingStderr(Vec::with_capacity(256)))
        // Colours only for a person at a terminal, never in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// From now on, every log line is redacted with `filter`.
pub fn guard_secrets(filter: SecretFilter) {
    *FILTER.write().unwrap_or_else(|p| p.into_inner()) = Some(filter);
}

/// One log event, buffered, redacted and written to stderr in one piece when dropped.
struct RedactingStderr(Vec<u8>);

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactingStderr {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let filter = FILTER.read().unwrap_or_else(|p| p.into_inner());
        let line = match filter.as_ref() {
            Some(f) => f.redact(&text),
            None => text.into_owned(),
        };
        // Nowhere to report a failed write to stderr.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_redacted_once_secrets_are_known() {
        guard_secrets(SecretFilter::new(vec![(
            "the test token".into(),
            "tok-0123456789abcdef".into(),
        )]));
        let filter = FILTER.read().unwrap();
        let out = filter
            .as_ref()
            .unwrap()
            .redact("could not post: tok-0123456789abcdef\n");
        assert_eq!(out, "could not post: [redacted: the test token]\n");
    }
}
