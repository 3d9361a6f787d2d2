//! An agent's log (`agent.log`): the harness's stderr, copied line by line into a file that is
//! rotated (`agent.log` → `agent.log.1` → …) before it passes a size, and read back from its end.
//! No agent can fill the disk by writing, and a crash report never reads a whole file.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest line [`pump`] copies; the rest of a longer line is dropped and the cut marked.
pub const MAX_LINE: usize = 64 * 1024;

/// A size-bounded log file: at most `max_bytes` in the current file (unless one write alone is
/// bigger), plus `keep` older files. Files are the owner's only (0600).
#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: File,
    /// Bytes in the current file.
    size: u64,
}

impl RotatingLog {
    /// Opens (or creates) `path` for appending.
    pub fn open(path: impl Into<PathBuf>, max_bytes: u64, keep: usize) -> io::Result<Self> {
        let path = path.into();
        let file = open_private(&path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path,
            max_bytes,
            keep,
            file,
            size,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `bytes`, rotating first if they would take the current file past `max_bytes`.
    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size.saturating_add(bytes.len() as u64) > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// `agent.log.{keep-1}` → `agent.log.{keep}` … `agent.log` → `agent.log.1`, and a new empty
    /// `agent.log`. With `keep` 0 the current file is simply started afresh.
    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            remove_if_there(&self.path)?;
        } else {
            remove_if_there(&rotated(&self.path, self.keep))?;
            for i in (1..self.keep).rev() {
                rename_if_there(&rotated(&self.path, i), &rotated(&self.path, i + 1))?;
            }
            rename_if_there(&self.path, &rotated(&self.path, 1))?;
        }
        self.file = open_private(&self.path)?;
        self.size = self.file.metadata()?.len();
        Ok(())
    }
}

/// `agent.log.<i>`.
pub fn rotated(path: &Path, i: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{i}"));
    PathBuf::from(name)
}

fn open_private(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| with_path(e, "cannot open", path))?;
    // A file made before logs were private keeps its old mode unless told.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| with_path(e, "cannot chmod", path))?;
    Ok(file)
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(with_path(e, "cannot remove", path)),
        _ => Ok(()),
    }
}

fn rename_if_there(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(with_path(e, "cannot rotate", from)),
        _ => Ok(()),
    }
}

/// `e` with the path it concerns in its message (the kind is kept, so NotFound stays NotFound).
fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Copies `reader` (a child's stderr) into `log` line by line until EOF, so rotation falls on
/// line boundaries. A line longer than [`MAX_LINE`] is cut there and marked; a last line
/// without a newline gets one.
///
/// A failing write (disk full) does not stop the copy: the child must never block on a full
/// pipe. The first write error is logged at once and returned at EOF; a read error ends the
/// copy at once.
pub async fn pump(mut reader: impl AsyncRead + Unpin, mut log: RotatingLog) -> io::Result<()> {
    let mut chunk = vec![0u8; 8192];
    let mut line: Vec<u8> = Vec::with_capacity(1024);
    // Whether the current line was cut (the rest of it is being skipped).
    let mut cut = false;
    let mut failed: Option<io::Error> = None;
    let mut emit = |line: &mut Vec<u8>, log: &mut RotatingLog| {
        if let Err(e) = log.write_all(line)
            && failed.is_none()
        {
            tracing::warn!(log = %log.path().display(), error = %e, "cannot write the agent's log; dropping its lines");
            failed = Some(e);
        }
        line.clear();
    };
    loop {
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        let mut rest = &chunk[..n];
        while !rest.is_empty() {
            let (part, newline) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            rest = &rest[part.len() + usize::from(newline)..];
            if !cut {
                let room = MAX_LINE - line.len();
                line.extend_from_slice(&part[..part.len().min(room)]);
                if part.len() > room {
                    line.extend_from_slice(
                        format!(" …[line cut at {MAX_LINE} bytes]\n").as_bytes(),
                    );
                    emit(&mut line, &mut log);
                    cut = true;
                }
            }
            if newline {
                if !cut {
                    line.push(b'\n');
                    emit(&mut line, &mut log);
                }
                cut = false;
            }
        }
    }
    if !line.is_empty() {
        line.push(b'\n');
        emit(&mut line, &mut log);
    }
    failed.map_or(Ok(()), Err)
}

/// One pipe for a child's stdout and stderr both: the read end (for [`pump`]) and two write
/// ends to give the command (`cmd.stdout(out).stderr(err)`). Drop the command after spawning
/// it, so that the read end sees EOF when the child (and whatever inherited the pipe) exits.
/// Must be called inside a tokio runtime.
pub fn output_pipe() -> io::Result<(
    tokio::net::unix::pipe::Receiver,
    std::process::Stdio,
    std::process::Stdio,
)> {
    let (read, write) = io::pipe()?;
    let out = write.try_clone()?;
    let read = tokio::net::unix::pipe::Receiver::from_owned_fd(read.into())?;
    Ok((read, out.into(), write.into()))
}

/// The last `lines` lines of `path`, reading at most its last `max_bytes` bytes (from the end:
/// a huge file costs no more than a small one). Invalid UTF-8 is replaced. When the window
/// starts inside a line, that partial line is dropped, unless it is the only one.
/// A missing file is a `NotFound` error.
pub fn tail(path: &Path, lines: usize, max_bytes: u64) -> io::Result<String> {
    let mut f = File::open(path).map_err(|e| with_path(e, "cannot open", path))?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(max_bytes);
    // One byte before the window too: whether it is a newline says if the window starts a line.
    let before = u64::from(start > 0);
    f.seek(SeekFrom::Start(start - before))?;
    let mut buf = Vec::with_capacity(usize::try_from(len - start + before).unwrap_or(0));
    // `take`: the file may grow while it is read.
    f.take(max_bytes.saturating_add(before))
        .read_to_end(&mut buf)?;
    let window = if before == 0 {
        &buf[..]
    } else {
        match buf.iter().position(|b| *b == b'\n') {
            Some(i) if i + 1 < buf.len() => &buf[i + 1..],
            _ => buf.get(1..).unwrap_or(&[]),
        }
    };
    let text = String::from_utf8_lossy(window);
    let all: Vec<&str> = text.lines().collect();
    Ok(all[all.len().saturating_sub(lines)..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn rotates_at_the_threshold_and_keeps_so_many() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.log");
        let mut log = RotatingLog::open(&path, 10, 2).expect("open");
        // Each write is 4 bytes: two fit in 10, a third would make 12.
        for w in [
            "aaa\n", "bbb\n", "ccc\n", "ddd\n", "eee\n", "fff\n", "ggg\n",
        ] {
            log.write_all(w.as_bytes()).expect("write");
        }
        assert_eq!(read(&path), "ggg\n");
        assert_eq!(read(&rotated(&path, 1)), "eee\nfff\n");
        assert_eq!(read(&rotated(&path, 2)), "ccc\nddd\n");
        assert!(!rotated(&path, 3).exists(), "only 2 old files are kept");
        for p in [path.clone(), rotated(&path, 1), rotated(&path, 2)] {
            let mode = std::fs::metadata(&p).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", p.display());
        }
    }

    #[test]
    fn exactly_the_threshold_does_not_rotate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.log");
        let mut log = RotatingLog::open(&path, 8, 1).expect("open");
        log.write_all(b"1234").expect("write");
        log.write_all(b"5678").expect("write");
        assert_eq!(read(&path), "12345678");
        assert!(!rotated(&path, 1).exists());
        // A write bigger than the limit alone goes into a fresh file whole.
        log.write_all(b"0123456789").expect("write");
        assert_eq!(read(&path), "0123456789");
        assert_eq!(read(&rotated(&path, 1)), "12345678");
    }

    #[test]
    fn reopening_counts_what_is_there_and_keep_zero_truncates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.log");
        std::fs::write(&path, "old old\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let mut log = RotatingLog::open(&path, 10, 0).expect("open");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "an old file is made private");
        log.write_all(b"new\n").expect("write");
        assert_eq!(read(&path), "new\n");
        assert!(!rotated(&path, 1).exists());
    }

    #[tokio::test]
    async fn pump_copies_lines_cuts_long_ones_and_ends_the_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.log");
        let long = "x".repeat(MAX_LINE + 10);
        let input = format!("one\ntwo\n{long}\nthree\nfour");
        let log = RotatingLog::open(&path, 1 << 20, 1).expect("open");
        pump(input.as_bytes(), log).await.expect("pump");
        let text = read(&path);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{:?}", &text[..40]);
        assert_eq!(&lines[..2], ["one", "two"]);
        assert_eq!(
            lines[2],
            format!("{} …[line cut at {MAX_LINE} bytes]", &long[..MAX_LINE])
        );
        assert_eq!(&lines[3..], ["three", "four"]);
        assert!(text.ends_with("four\n"));
    }

    #[tokio::test]
    async fn pump_rotates_on_line_boundaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.log");
        let log = RotatingLog::open(&path, 12, 3).expect("open");
        // Split across reads at odd places: the chunking must not matter.
        let (mut tx, rx) = tokio::io::duplex(3);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            tx.write_all(b"line 1\nline 2\nline 3\n")
                .await
                .expect("write");
        });
        pump(rx, log).await.expect("pump");
        writer.await.expect("writer");
        assert_eq!(read(&path), "line 3\n");
        assert_eq!(read(&rotated(&path, 1)), "line 2\n");
        assert_eq!(read(&rotated(&path, 2)), "line 1\n");
    }

    #[tokio::test]
    async fn a_childs_stdout_and_stderr_reach_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.log");
        let (rx, out, err) = output_pipe().expect("pipe");
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "echo to stdout; echo to stderr >&2"])
            .stdout(out)
            .stderr(err);
        let mut child = cmd.spawn().expect("spawn sh");
        drop(cmd);
        let log = RotatingLog::open(&path, 1 << 20, 1).expect("open");
        pump(rx, log).await.expect("pump");
        assert!(child.wait().await.expect("wait").success());
        assert_eq!(read(&path), "to stdout\nto stderr\n");
    }

    #[test]
    fn tail_reads_only_the_end_of_a_huge_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.log");
        let mut f = File::create(&path).expect("create");
        // 50 MB of zeros (sparse), then 64 KiB of invalid UTF-8 with no newline, then the lines.
        f.set_len(50 << 20).expect("set_len");
        f.seek(SeekFrom::End(0)).expect("seek");
        f.write_all(&vec![0xFF; 64 << 10]).expect("write");
        f.write_all(b"\nfirst\nsecond\nthird\n").expect("write");
        drop(f);
        let cases: &[(usize, u64, &str)] = &[
            (2, 1024, "second\nthird"),
            (10, 1024, "first\nsecond\nthird"),
            (10, 13, "second\nthird"),
            (10, 12, "third"),
            (0, 1024, ""),
        ];
        for (lines, max, want) in cases {
            assert_eq!(
                tail(&path, *lines, *max).expect("tail"),
                *want,
                "{lines} {max}"
            );
        }
        // A window starting inside the invalid bytes: that partial line is dropped.
        assert_eq!(tail(&path, 10, 100).expect("tail"), "first\nsecond\nthird");
    }

    #[test]
    fn tail_of_small_empty_partial_and_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.log");
        std::fs::write(&path, "").expect("write");
        assert_eq!(tail(&path, 5, 1024).expect("tail"), "");
        std::fs::write(&path, "a\nb\nhalf a li").expect("write");
        assert_eq!(tail(&path, 2, 1024).expect("tail"), "b\nhalf a li");
        std::fs::write(&path, "no newline at all").expect("write");
        assert_eq!(tail(&path, 2, 7).expect("tail"), " at all");
        std::fs::write(&path, b"ok\n\xFF\xFEbad\n").expect("write");
        assert_eq!(
            tail(&path, 5, 1024).expect("tail"),
            "ok\n\u{FFFD}\u{FFFD}bad"
        );
        let missing = dir.path().join("nope.log");
        let e = tail(&missing, 5, 1024).expect_err("missing");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("nope.log"), "{e}");
    }
}
