//! Small filesystem helpers: private files, atomic writes, finding programs.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Writes `bytes` to `path` atomically (temp file + rename), readable by the owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic(path, bytes, 0o600)
}

pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().context("path has no parent directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move {} into place", path.display()))?;
    Ok(())
}

/// Creates `dir` (and parents) with mode 0700.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot chmod {}", dir.display()))?;
    Ok(())
}

/// `path` made absolute against the working directory (lexically: nothing needs to exist, and
/// symlinks are kept). Paths are made absolute once, where they enter the program.
pub fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot make {} absolute", path.display()))
}

/// The first `program` on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The bytes of `path`, a regular file of at most `max` bytes. Anything else is refused before
/// it is read: a FIFO or a device (`/dev/zero`, a tty) could block the reader or stream
/// forever, a directory is a mistake. The file is opened non-blocking (a FIFO swapped in after
/// the check cannot block the open) and checked again once open; a file that grows past `max`
/// while it is read is refused too.
pub fn read_bounded(path: &Path, max: u64) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        anyhow::bail!(
            "{} is not a regular file ({})",
            path.display(),
            file_kind(&meta)
        );
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let meta = f
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        anyhow::bail!(
            "{} is not a regular file ({})",
            path.display(),
            file_kind(&meta)
        );
    }
    if meta.len() > max {
        anyhow::bail!(
            "{} is {} bytes, more than the limit of {max}",
            path.display(),
            meta.len()
        );
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    f.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > max {
        anyhow::bail!(
            "{} grew past the limit of {max} bytes while it was read",
            path.display()
        );
    }
    Ok(bytes)
}

/// A secret from a `*_file`: [`read_bounded`], UTF-8, surrounding whitespace trimmed. An empty
/// secret is refused (an empty token or key is always a mistake, and would match everything
/// in the secret filter).
pub fn read_secret(path: &Path, max: u64) -> anyhow::Result<String> {
    let bytes = read_bounded(path, max)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", path.display()))?;
    let secret = text.trim();
    if secret.is_empty() {
        anyhow::bail!("{} is empty", path.display());
    }
    Ok(secret.to_owned())
}

/// What a file is, for an error message.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_bounded_reads_regular_files_within_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "  s3cret\n").expect("write");
        assert_eq!(read_bounded(&path, 9).expect("read"), b"  s3cret\n");
        assert_eq!(read_secret(&path, 9).expect("read"), "s3cret");
        let e = read_bounded(&path, 8).expect_err("too large");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("token") && msg.contains("9 bytes") && msg.contains("limit of 8"),
            "{msg}"
        );
    }

    #[test]
    fn read_secret_refuses_empty_and_binary_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        for (content, want) in [(&b" \n"[..], "is empty"), (&b"\xFF\xFE"[..], "not UTF-8")] {
            std::fs::write(&path, content).expect("write");
            let msg = format!("{:#}", read_secret(&path, 100).expect_err("refused"));
            assert!(msg.contains("key") && msg.contains(want), "{msg}");
        }
    }

    #[test]
    fn read_bounded_refuses_what_is_not_a_regular_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("run mkfifo");
        assert!(made.success(), "mkfifo {}", fifo.display());
        let link = dir.path().join("link-to-zero");
        std::os::unix::fs::symlink("/dev/zero", &link).expect("symlink");
        let missing = dir.path().join("missing");
        let cases: [(&Path, &str); 5] = [
            (Path::new("/dev/zero"), "a character device"),
            (&link, "a character device"),
            (&fifo, "a FIFO"),
            (dir.path(), "a directory"),
            (&missing, "cannot read"),
        ];
        for (path, want) in cases {
            let msg = format!("{:#}", read_bounded(path, 1 << 20).expect_err("refused"));
            assert!(
                msg.contains(&*path.to_string_lossy()) && msg.contains(want),
                "{}: {msg}",
                path.display()
            );
        }
    }
}
