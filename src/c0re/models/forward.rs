//! A streamed model answer passed on as it arrives: the provider's bytes cut into whole
//! server-sent events, each forwarded to the harness the moment its blank line is read. Pure:
//! the reader around it does the I/O and the size cap.
//!
//! The rules (the table is in the tests):
//! - An event ends at a blank line; bytes after the last blank line wait for more.
//! - Carriage returns are dropped (`\r\n` ends a line like `\n`).
//! - Only events with a `data:` line are forwarded; comments (`: ping`) and empty events are
//!   not (nothing the client reads).
//! - What is left when the stream ends is one last event (a server that omits the final blank
//!   line), forwarded by the same rule.
//! - An event is split only at a blank line, so a multi-byte character is never cut.

/// Cuts a byte stream into whole server-sent events.
#[derive(Debug, Default)]
pub struct SseSplitter {
    buf: Vec<u8>,
    /// How much of `buf` was searched for a blank line already (each byte is looked at once,
    /// however small the pieces an event arrives in).
    scanned: usize,
}

impl SseSplitter {
    /// Takes the next bytes; the events they complete, in order (only those forwarded).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf
            .extend(bytes.iter().copied().filter(|&b| b != b'\r'));
        let mut events = Vec::new();
        let mut start = 0;
        // One byte back: a blank line may straddle two pushes.
        let mut from = self.scanned.saturating_sub(1);
        while let Some(pos) = self.buf[from..].windows(2).position(|w| w == b"\n\n") {
            let end = from + pos;
            if let Some(ev) = forwarded(&self.buf[start..end]) {
                events.push(ev);
            }
            start = end + 2;
            from = start;
        }
        self.buf.drain(..start);
        self.scanned = self.buf.len();
        events
    }

    /// The stream ended: what is left, if it is an event to forward.
    pub fn finish(self) -> Option<String> {
        forwarded(&self.buf)
    }
}

/// The event's text if it is one to forward (it has a `data:` line).
fn forwarded(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_matches('\n');
    text.lines()
        .any(|l| l.starts_with("data:"))
        .then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_forwarded_whole_and_in_order() {
        struct Case {
            name: &'static str,
            pushes: &'static [&'static [u8]],
            /// Events forwarded after each push, then at the end.
            want: &'static [&'static [&'static str]],
        }
        let cases = [
            Case {
                name: "one event per push",
                pushes: &[b"data: a\n\n", b"data: b\n\n"],
                want: &[&["data: a"], &["data: b"], &[]],
            },
            Case {
                name: "an event split over pushes waits for its blank line",
                pushes: &[b"data: {\"x\"", b":1}\n", b"\n"],
                want: &[&[], &[], &["data: {\"x\":1}"], &[]],
            },
            Case {
                name: "an event done, the next one's blank line split over the pushes",
                pushes: &[b"data: a\n\ndata: b\n", b"\ndata: c\n\n"],
                want: &[&["data: a"], &["data: b", "data: c"], &[]],
            },
            Case {
                name: "two events in one push",
                pushes: &[b"event: a\ndata: 1\n\nevent: b\ndata: 2\n\n"],
                want: &[&["event: a\ndata: 1", "event: b\ndata: 2"], &[]],
            },
            Case {
                name: "crlf line endings",
                pushes: &[b"data: a\r\n\r\ndata: b\r\n", b"\r\n"],
                want: &[&["data: a"], &["data: b"], &[]],
            },
            Case {
                name: "comments and empty events are not forwarded",
                pushes: &[b": ping\n\n\n\ndata: a\n\n"],
                want: &[&["data: a"], &[]],
            },
            Case {
                name: "a last event without its blank line is forwarded at the end",
                pushes: &[b"data: a\n\ndata: [DONE]"],
                want: &[&["data: a"], &["data: [DONE]"]],
            },
            Case {
                name: "a character cut between pushes is whole in its event",
                pushes: &[b"data: \xc3", b"\xa9\n\n"],
                want: &[&[], &["data: \u{e9}"], &[]],
            },
        ];
        for c in cases {
            let mut s = SseSplitter::default();
            let mut got: Vec<Vec<String>> = c.pushes.iter().map(|p| s.push(p)).collect();
            got.push(s.finish().into_iter().collect());
            let want: Vec<Vec<String>> = c
                .want
                .iter()
                .map(|w| w.iter().map(|e| (*e).to_owned()).collect())
                .collect();
            assert_eq!(got, want, "{}", c.name);
        }
    }
}
