//! The secret filter: nothing hive-c0re posts to a room may carry a secret.
//!
//! Two kinds of match: the hive's **known secrets** (the appservice tokens, the homeserver's
//! registration secret, the operator's password, every `api_key_file` and `secrets.files`
//! value), and **credential patterns** (API keys, access tokens, private keys) for secrets the
//! core was never told about. An agent's message that matches is refused and the agent told why
//! (the label, never the secret); the core's own notices (crash logs, diffs) are redacted.
//!
//! How a text is searched:
//! - Every known secret is matched in its **encoded forms** too: base64 (standard and URL-safe,
//!   at each of the three byte alignments inside a longer blob: only the characters fixed by the
//!   secret's bytes alone), hex (lower and upper case), URL percent-encoding (the usual encode
//!   sets, upper and lower hex digits, `%20` or `+` for space), and the HTML and JSON escapes
//!   (`formatted_body` is HTML; logs quote JSON).
//! - A **multi-line** secret (a PEM key in a secret file) is guarded as a whole and line by line:
//!   each trimmed line of at least [`MIN_SECRET_LEN`] bytes is a secret of its own, same label.
//! - A secret **split across lines** is still found: the text is searched with every CR and LF
//!   elided, and matches are mapped back to the original text (a redaction covers the whole
//!   original span, line breaks included).
//! - **One pass**: a single Aho-Corasick automaton over every variant of every known secret,
//!   built once, runs once over the elided text; the credential regexes run (as one
//!   `RegexSet` first) over the elided text and, when it differs, the original one (a line break
//!   is a word boundary that eliding would erase). Time and memory are linear in the text plus
//!   the secrets (overlapping matches are merged as they come).

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::HashSet;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};
use regex::{Regex, RegexSet};
use serde_json::Value;

/// Known secrets (and each line of a multi-line one) shorter than this after trimming are not
/// matched (too many false positives); neither is any variant shorter than this.
const MIN_SECRET_LEN: usize = 8;

/// Redacting a redacted text again finds nothing, except in contrived cases (a marker's `]`
/// creating the word boundary a credential pattern needs); after this many extra passes the
/// whole text is replaced by [`FALLBACK`].
const MAX_EXTRA_PASSES: usize = 3;
const FALLBACK: &str = "[redacted]";

/// Credential patterns for secrets the core was never told about, with their labels.
const CREDENTIALS: [(&str, &str); 9] = [
    ("an Anthropic API key", r"sk-ant-[A-Za-z0-9_-]{20,}"),
    (
        "an OpenAI API key",
        r"\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,}",
    ),
    (
        "a GitHub token",
        r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})",
    ),
    ("a GitLab token", r"\bglpat-[A-Za-z0-9_-]{20,}"),
    ("an AWS access key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    ("a Slack token", r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    (
        "a Matrix access token",
        r"\bsyt_[A-Za-z0-9]+_[A-Za-z0-9]{10,}_[A-Za-z0-9]+",
    ),
    ("a private key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    (
        "a JSON web token",
        r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
    ),
];

/// URL encode sets in common use: everything but alphanumerics; RFC 3986 unreserved kept
/// (Python `quote(safe="")`); that plus `/` (Python `quote`); JavaScript's
/// `encodeURIComponent`; JavaScript's `encodeURI`; `application/x-www-form-urlencoded`.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
const PATH: &AsciiSet = &UNRESERVED.remove(b'/');
const URI_COMPONENT: &AsciiSet = &UNRESERVED
    .remove(b'!')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*');
const URI: &AsciiSet = &URI_COMPONENT
    .remove(b';')
    .remove(b',')
    .remove(b'/')
    .remove(b'?')
    .remove(b':')
    .remove(b'@')
    .remove(b'&')
    .remove(b'=')
    .remove(b'+')
    .remove(b'$')
    .remove(b'#');
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');
const ENCODE_SETS: [&AsciiSet; 6] = [NON_ALPHANUMERIC, UNRESERVED, PATH, URI_COMPONENT, URI, FORM];

/// The filter, built once from the known secrets; cheap to clone (one `Arc`). `Debug` never
/// shows a secret.
#[derive(Clone)]
pub struct SecretFilter {
    inner: Arc<Inner>,
}

struct Inner {
    /// The known secrets' labels, then the credential patterns' labels.
    labels: Vec<String>,
    /// Every variant of every known secret; `None` when there are none.
    automaton: Option<AhoCorasick>,
    /// The label (index into `labels`) of each automaton pattern.
    owner: Vec<usize>,
    set: RegexSet,
    credentials: Vec<Regex>,
}

/// A match in the original text, `label` an index into `Inner::labels` (lower wins a tie).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Span {
    start: usize,
    end: usize,
    label: usize,
}

impl std::fmt::Debug for SecretFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFilter")
            .field("known", &(self.inner.labels.len() - CREDENTIALS.len()))
            .field("variants", &self.inner.owner.len())
            .finish()
    }
}

impl SecretFilter {
    /// `known`: (label, value) pairs; values are trimmed, and short or empty ones ignored. A
    /// label that itself holds a secret is replaced by "a secret".
    pub fn new(known: Vec<(String, String)>) -> Self {
        let mut labels = Vec::new();
        let mut patterns = Vec::new();
        let mut owner = Vec::new();
        let mut seen = HashSet::new();
        for (label, value) in known {
            let whole = value.trim();
            if whole.len() < MIN_SECRET_LEN {
                continue;
            }
            let mut forms = variants(whole);
            if whole.contains(['\r', '\n']) {
                let lines: Vec<&str> = whole.split(['\r', '\n']).map(str::trim).collect();
                for line in lines.iter().filter(|l| l.len() >= MIN_SECRET_LEN) {
                    forms.extend(variants(line));
                }
                forms.extend(variants(&lines.concat()));
            }
            for form in forms {
                if form.len() >= MIN_SECRET_LEN && seen.insert(form.clone()) {
                    patterns.push(form);
                    owner.push(labels.len());
                }
            }
            labels.push(label);
        }
        let known_count = labels.len();
        labels.extend(CREDENTIALS.iter().map(|(l, _)| (*l).to_owned()));
        let automaton = (!patterns.is_empty()).then(|| {
            AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(&patterns)
                // Fails only past u32::MAX states: gigabytes of secrets.
                .expect("an automaton over the known secrets")
        });
        let set = RegexSet::new(CREDENTIALS.iter().map(|(_, re)| re)).expect("valid patterns");
        let credentials = CREDENTIALS
            .iter()
            .map(|(_, re)| Regex::new(re).expect("a valid pattern"))
            .collect();
        let mut inner = Inner {
            labels,
            automaton,
            owner,
            set,
            credentials,
        };
        for i in 0..known_count {
            if inner.find(&inner.labels[i]).is_some() {
                inner.labels[i] = "a secret".to_owned();
            }
        }
        Self {
            inner: Arc::new(inner),
        }
    }

    /// What kind of secret `text` holds, if any (a label, never the secret).
    pub fn find(&self, text: &str) -> Option<String> {
        self.inner.find(text).map(|i| self.inner.labels[i].clone())
    }

    /// `text` with every secret (every variant, every span split by line breaks) replaced by
    /// `[redacted: <label>]`; overlapping matches are merged into one.
    pub fn redact(&self, text: &str) -> String {
        self.redacted(text).unwrap_or_else(|| text.to_owned())
    }

    /// The first secret in any string of `value` (object keys too), recursively.
    pub fn find_in_json(&self, value: &Value) -> Option<String> {
        let mut stack = vec![value];
        while let Some(v) = stack.pop() {
            match v {
                Value::String(s) => {
                    if let Some(label) = self.find(s) {
                        return Some(label);
                    }
                }
                Value::Array(items) => stack.extend(items.iter().rev()),
                Value::Object(map) => {
                    if let Some(label) = map.keys().find_map(|k| self.find(k)) {
                        return Some(label);
                    }
                    stack.extend(map.values().rev());
                }
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
        None
    }

    /// Redacts every string of `value` (object keys too) in place; true if anything changed.
    /// Two keys redacted alike are kept apart by a ` #<n>` suffix.
    pub fn redact_json(&self, value: &mut Value) -> bool {
        let mut changed = false;
        let mut stack = vec![value];
        while let Some(v) = stack.pop() {
            match v {
                Value::String(s) => {
                    if let Some(r) = self.redacted(s) {
                        *s = r;
                        changed = true;
                    }
                }
                Value::Array(items) => stack.extend(items.iter_mut()),
                Value::Object(map) => {
                    if map.keys().any(|k| self.inner.find(k).is_some()) {
                        changed = true;
                        for (n, (k, v)) in std::mem::take(map).into_iter().enumerate() {
                            let base = self.redact(&k);
                            let (mut key, mut n) = (base.clone(), n);
                            while map.contains_key(&key) {
                                key = format!("{base} #{n}");
                                n += 1;
                            }
                            map.insert(key, v);
                        }
                    }
                    stack.extend(map.values_mut());
                }
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
        changed
    }

    /// The first secret in a message's content: every string of it, structured fields included.
    pub fn find_in_content(&self, content: &Value) -> Option<String> {
        self.find_in_json(content)
    }

    /// Redacts a message's content in place (every string of it); true if anything was found.
    pub fn redact_content(&self, content: &mut Value) -> bool {
        self.redact_json(content)
    }

    /// `text` redacted, or `None` if it holds no secret.
    fn redacted(&self, text: &str) -> Option<String> {
        let mut out = self.inner.redact_once(text)?;
        for _ in 0..MAX_EXTRA_PASSES {
            match self.inner.redact_once(&out) {
                None => return Some(out),
                Some(again) => out = again,
            }
        }
        Some(FALLBACK.to_owned())
    }
}

impl Inner {
    /// The label index of a secret in `text`: a known secret first, then a credential pattern
    /// (the first in `CREDENTIALS` order).
    fn find(&self, text: &str) -> Option<usize> {
        let elided = Elided::new(text);
        if let Some(m) = self
            .automaton
            .as_ref()
            .and_then(|ac| ac.find(elided.text.as_ref()))
        {
            return Some(self.owner[m.pattern().as_usize()]);
        }
        let first = |hay: &str| self.set.matches(hay).iter().next();
        let hit = match (first(&elided.text), elided.is_changed()) {
            (Some(a), true) => Some(first(text).map_or(a, |b| a.min(b))),
            (None, true) => first(text),
            (hit, false) => hit,
        };
        hit.map(|i| self.labels.len() - CREDENTIALS.len() + i)
    }

    /// Every secret's span in `text`, sorted, overlaps merged.
    fn spans(&self, text: &str) -> Vec<Span> {
        let elided = Elided::new(text);
        let mut spans = Vec::new();
        if let Some(ac) = &self.automaton {
            for m in ac.find_overlapping_iter(elided.text.as_ref()) {
                let span = elided.span(m.start(), m.end(), self.owner[m.pattern().as_usize()]);
                push_merged(&mut spans, span);
            }
        }
        let base = self.labels.len() - CREDENTIALS.len();
        let mut credentials = |hay: &str, map: &dyn Fn(usize, usize, usize) -> Span| {
            for i in self.set.matches(hay).iter() {
                for m in self.credentials[i].find_iter(hay) {
                    spans.push(map(m.start(), m.end(), base + i));
                }
            }
        };
        credentials(&elided.text, &|s, e, l| elided.span(s, e, l));
        if elided.is_changed() {
            credentials(text, &|start, end, label| Span { start, end, label });
        }
        spans.sort_unstable_by_key(|s| (s.start, Reverse(s.end), s.label));
        let mut merged = Vec::with_capacity(spans.len());
        for s in spans {
            push_merged(&mut merged, s);
        }
        merged
    }

    /// One redaction pass; `None` if nothing was found.
    fn redact_once(&self, text: &str) -> Option<String> {
        let spans = self.spans(text);
        if spans.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for s in spans {
            out.push_str(&text[at..s.start]);
            out.push_str("[redacted: ");
            out.push_str(&self.labels[s.label]);
            out.push(']');
            at = s.end;
        }
        out.push_str(&text[at..]);
        Some(out)
    }
}

/// Adds `span` to `spans` (disjoint, sorted, ends not after `span`'s end), merging it with the
/// spans it overlaps; the merged span keeps the label of the earliest start (lower on a tie).
fn push_merged(spans: &mut Vec<Span>, mut span: Span) {
    while let Some(last) = spans.last().copied() {
        if last.end <= span.start {
            break;
        }
        spans.pop();
        if (last.start, last.label) < (span.start, span.label) {
            span.label = last.label;
        }
        span.start = span.start.min(last.start);
        span.end = span.end.max(last.end);
    }
    spans.push(span);
}

/// A text with every CR and LF removed, and the way back to the original positions.
struct Elided<'a> {
    text: Cow<'a, str>,
    /// For each removed run of line breaks: its position in `text` and the bytes removed up to
    /// and including it.
    runs: Vec<(usize, usize)>,
}

impl<'a> Elided<'a> {
    fn new(original: &'a str) -> Self {
        if !original.contains(['\r', '\n']) {
            return Self {
                text: Cow::Borrowed(original),
                runs: Vec::new(),
            };
        }
        let mut text = String::with_capacity(original.len());
        let mut runs = Vec::new();
        let mut removed = 0;
        let mut rest = original;
        while let Some(i) = rest.find(['\r', '\n']) {
            text.push_str(&rest[..i]);
            let n = rest[i..]
                .bytes()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            removed += n;
            runs.push((text.len(), removed));
            rest = &rest[i + n..];
        }
        text.push_str(rest);
        Self {
            text: Cow::Owned(text),
            runs,
        }
    }

    fn is_changed(&self) -> bool {
        !self.runs.is_empty()
    }

    /// Where byte `i` of the elided text is in the original.
    fn original(&self, i: usize) -> usize {
        let k = self.runs.partition_point(|&(at, _)| at <= i);
        i + k.checked_sub(1).map_or(0, |k| self.runs[k].1)
    }

    /// The original span of elided bytes `start..end` (not empty): from its first byte to its
    /// last, the line breaks between them included.
    fn span(&self, start: usize, end: usize, label: usize) -> Span {
        Span {
            start: self.original(start),
            end: self.original(end - 1) + 1,
            label,
        }
    }
}

/// Every form of `secret` to look for (line breaks elided, since the text is searched so).
fn variants(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let mut out = vec![
        secret.replace(['\r', '\n'], ""),
        secret
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;"),
        crate::matrix::markdown::escape(secret),
        secret.replace('\\', r"\\").replace('"', r#"\""#),
    ];
    // Base64 inside a longer blob, after k filler bytes: only the characters whose six bits all
    // come from the secret.
    for k in 0..3 {
        let mut buf = vec![0; k];
        buf.extend_from_slice(bytes);
        let encoded = STANDARD_NO_PAD.encode(&buf);
        let fixed = &encoded[(8 * k).div_ceil(6)..8 * (k + bytes.len()) / 6];
        out.push(fixed.replace('+', "-").replace('/', "_"));
        out.push(fixed.to_owned());
    }
    // The whole blob, padding and all, for a redaction that leaves nothing behind.
    out.push(STANDARD.encode(bytes));
    out.push(URL_SAFE.encode(bytes));
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    out.push(hex.to_ascii_uppercase());
    out.push(hex);
    for set in ENCODE_SETS {
        let upper = percent_encode(bytes, set).to_string();
        let lower = lower_percent_digits(&upper);
        for form in [upper, lower] {
            if form.contains("%20") {
                out.push(form.replace("%20", "+"));
            }
            out.push(form);
        }
    }
    out
}

/// `%2F` → `%2f`: a percent-encoded text with lower-case hex digits.
fn lower_percent_digits(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut digits = 0;
    for c in encoded.chars() {
        if digits > 0 {
            out.push(c.to_ascii_lowercase());
            digits -= 1;
        } else {
            digits = if c == '%' { 2 } else { 0 };
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;

    const TOKEN: &str = "hs-token-abcdefgh12345";
    /// `/`, `+`, `=`, a space, and bytes whose base64 holds `+` and `/`.
    const PASSWORD: &str = "pa ss/wo+rd=?~&<";
    const PEM: &str = "-----BEGIN TEST KEY-----\r\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n\
                       BKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\nab\n-----END TEST KEY-----\n";

    fn filter() -> SecretFilter {
        SecretFilter::new(vec![
            ("the appservice token".into(), TOKEN.into()),
            ("the operator's password".into(), format!("  {PASSWORD}\n")),
            ("a secret from key.pem".into(), PEM.into()),
            ("too short".into(), " abc1234 ".into()),
        ])
    }

    fn hex(s: &str) -> String {
        s.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// `text` with `brk` inserted before byte `at`.
    fn split(text: &str, at: usize, brk: &str) -> String {
        format!("{}{brk}{}", &text[..at], &text[at..])
    }

    /// Texts that hold a secret, and the label found.
    fn positives() -> Vec<(String, &'static str)> {
        let (tok, pw, op) = (
            "the appservice token",
            "the operator's password",
            "a secret from key.pem",
        );
        let mut cases = vec![
            (TOKEN.to_owned(), tok),
            (PASSWORD.to_owned(), pw),
            (STANDARD.encode(TOKEN), tok),
            (URL_SAFE_NO_PAD.encode(PASSWORD), pw),
            (hex(TOKEN), tok),
            (hex(PASSWORD).to_uppercase(), pw),
            // Python quote_plus, JS encodeURIComponent, Python quote, lower-case digits.
            ("pa+ss%2Fwo%2Brd%3D%3F~%26%3C".to_owned(), pw),
            ("pa%20ss%2Fwo%2Brd%3D%3F~%26%3C".to_owned(), pw),
            ("pa%20ss/wo%2Brd%3D%3F~%26%3C".to_owned(), pw),
            ("pa%20ss%2fwo%2brd%3d%3f%7e%26%3c".to_owned(), pw),
            ("pa ss/wo+rd=?~&amp;&lt;".to_owned(), pw),
            // One line of a multi-line secret file, the whole of it, and it base64-encoded.
            ("BKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj".to_owned(), op),
            (PEM.replace('\n', "\r\n"), op),
            (PEM.replace("\r\n", "").replace('\n', ""), op),
            (STANDARD.encode(PEM), op),
            // A base64 blob wrapped at 16 columns.
            (split(&STANDARD.encode(format!("x{TOKEN}")), 16, "\n"), tok),
        ];
        for prefix in ["user:", "usr:", "us:"] {
            for secret in [TOKEN, PASSWORD] {
                let label = if secret == TOKEN { tok } else { pw };
                let blob = format!("{prefix}{secret}:tail");
                cases.push((STANDARD.encode(&blob), label));
                cases.push((URL_SAFE_NO_PAD.encode(&blob), label));
            }
        }
        for at in [1, 5, 9, TOKEN.len() - 1] {
            for brk in ["\n", "\r\n", "\r"] {
                cases.push((split(TOKEN, at, brk), tok));
            }
        }
        cases
    }

    #[test]
    fn finds_every_variant_and_redacts_it() {
        let f = filter();
        let url = URL_SAFE_NO_PAD.encode(format!("usr:{PASSWORD}"));
        assert!(
            url.contains(['-', '_']),
            "{url}: the test would not tell the alphabets apart"
        );
        for (secret, label) in positives() {
            let text = format!("before: {secret} :after");
            assert_eq!(f.find(&text).as_deref(), Some(label), "{text:?}");
            let r = f.redact(&text);
            assert_eq!(f.find(&r), None, "{text:?} → {r:?}");
            assert!(r.starts_with("before: ") && r.ends_with(" :after"), "{r:?}");
            assert!(r.contains(&format!("[redacted: {label}]")), "{r:?}");
        }
    }

    #[test]
    fn ordinary_text_is_not_flagged() {
        let f = filter();
        let mut garbled = STANDARD.encode(TOKEN).into_bytes();
        garbled[6] ^= 1;
        let cases = [
            "ordinary text about tokens, with\nline breaks\r\nhere".to_owned(),
            "abc1234 is short and fine; hs-token-abcdefgh alone is not the token".to_owned(),
            "the word skeleton, sk-short".to_owned(),
            STANDARD.encode("hello world, this is fine"),
            hex("nothing secret here"),
            String::from_utf8(garbled).expect("base64 is ASCII"),
            "ab\n-----END OF TEXT".to_owned(),
        ];
        for text in cases {
            assert_eq!(f.find(&text), None, "{text:?}");
            assert_eq!(f.redact(&text), text);
        }
    }

    #[test]
    fn credential_patterns() {
        let f = filter();
        let cases = [
            (
                "sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                "an Anthropic API key",
            ),
            (
                "key=sk-proj-abcdefghijklmnopqrstuvwxyz012345",
                "an OpenAI API key",
            ),
            ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "a GitHub token"),
            ("AKIAABCDEFGHIJKLMNOP", "an AWS access key"),
            // A line break is a word boundary, split or not.
            ("here it is\nAKIAABCDEFGHIJKLMNOP\nend", "an AWS access key"),
            (
                "ghp_abcdefghijklmno\npqrstuvwxyz0123456789",
                "a GitHub token",
            ),
            ("-----BEGIN OPENSSH PRIVATE KEY-----", "a private key"),
            (
                "syt_b3BlcmF0b3I_AbCdEfGhIjKlMnOpQrSt_0x1y2z",
                "a Matrix access token",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(f.find(text).as_deref(), Some(want), "{text}");
            assert_eq!(f.find(&f.redact(text)), None, "{text}");
        }
    }

    #[test]
    fn redaction_spans() {
        let f = SecretFilter::new(vec![
            ("the appservice token".into(), TOKEN.into()),
            ("another".into(), "defgh12345-zzzz".into()),
        ]);
        let cases = [
            (
                "a hs-token-abcdefgh12345 b sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAA c",
                "a [redacted: the appservice token] b [redacted: an Anthropic API key] c",
            ),
            // Split: the whole original span goes, line breaks included.
            (
                "a hs-tok\r\nen-abc\ndefgh12345\n b",
                "a [redacted: the appservice token]\n b",
            ),
            // Overlapping secrets merge into one span, labelled by the first.
            (
                "x hs-token-abcdefgh12345-zzzz y",
                "x [redacted: the appservice token] y",
            ),
            (
                "é\nhs-token-abcdefgh12345é",
                "é\n[redacted: the appservice token]é",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(f.redact(text), want, "{text:?}");
        }
    }

    #[test]
    fn labels_never_hold_the_secret() {
        let f = SecretFilter::new(vec![(format!("the key {TOKEN}"), TOKEN.into())]);
        assert_eq!(f.find(TOKEN).as_deref(), Some("a secret"));
        assert_eq!(f.redact(TOKEN), "[redacted: a secret]");
        assert!(!format!("{f:?}").contains(TOKEN));
    }

    #[test]
    fn json_every_string() {
        let f = filter();
        let b64 = STANDARD.encode(TOKEN);
        let cases = [
            serde_json::json!({"body": "fine", "a": {"b": {"c": [1, {"d": format!("x {TOKEN}")}]}}}),
            serde_json::json!({"org.hyperhive.event": {"last_lines": ["ok", "ok", b64]}}),
            serde_json::json!({"m.relates_to": {"rel_type": "m.thread", "event_id": PASSWORD}}),
            serde_json::json!({"body": "fine", "keys": {(TOKEN): 1, (format!("{TOKEN}\n")): 2}}),
            serde_json::json!([["deep", [[hex(TOKEN)]]]]),
        ];
        for mut v in cases {
            let before = v.to_string();
            assert!(f.find_in_json(&v).is_some(), "{before}");
            assert!(f.redact_content(&mut v), "{before}");
            assert_eq!(f.find_in_content(&v), None, "{before} → {v}");
            assert!(!f.redact_json(&mut v), "{v}");
            assert!(v.to_string().contains("[redacted: "), "{v}");
        }
        let mut keys = serde_json::json!({(TOKEN): 1, (format!("{TOKEN}\n")): 2, "ok": 3});
        assert!(f.redact_json(&mut keys));
        assert_eq!(
            keys,
            serde_json::json!({"[redacted: the appservice token]": 1,
                "[redacted: the appservice token]\n": 2, "ok": 3})
        );
        let mut clean = serde_json::json!({"body": "fine", "n": 12345678, "x": [null, true]});
        assert_eq!(f.find_in_json(&clean), None);
        assert!(!f.redact_json(&mut clean));
    }

    #[test]
    fn long_texts() {
        let f = filter();
        let piece = format!("{} filler\n", split(TOKEN, 7, "\r\n"));
        let text = piece.repeat(20_000);
        let r = f.redact(&text);
        assert_eq!(
            r.matches("[redacted: the appservice token]").count(),
            20_000
        );
        assert_eq!(f.find(&r), None);
        let f = SecretFilter::new(vec![("a's".into(), "aaaaaaaa".into())]);
        assert_eq!(f.redact(&"a".repeat(200_000)), "[redacted: a's]");
    }

    /// `secret` in one of the forms someone might post it in.
    fn encode(secret: &str, how: usize) -> String {
        match how {
            0 => secret.to_owned(),
            1 => STANDARD.encode(secret),
            2 => URL_SAFE_NO_PAD.encode(secret),
            3..=5 => STANDARD.encode(format!("{}:{secret}:tail", &"usr"[..how - 3])),
            6 => URL_SAFE_NO_PAD.encode(format!("u:{secret}:tail")),
            7 => hex(secret),
            8 => hex(secret).to_uppercase(),
            _ => percent_encode(secret.as_bytes(), NON_ALPHANUMERIC).to_string(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn redaction_leaves_no_variant(
            secret in "[!-~][ -~]{6,62}[!-~]",
            before in "[ -~\n]{0,40}",
            after in "[ -~\n]{0,40}",
            how in 0usize..10,
            brk in prop::option::of(prop_oneof![Just("\n"), Just("\r\n")]),
            at in any::<prop::sample::Index>(),
        ) {
            let f = SecretFilter::new(vec![("the test secret".into(), secret.clone())]);
            let mut form = encode(&secret, how);
            if let Some(brk) = brk {
                form.insert_str(at.index(form.len() + 1), brk);
            }
            let text = format!("{before}{form}{after}");
            prop_assert!(f.find(&text).is_some(), "{:?}", text);
            let r = f.redact(&text);
            prop_assert_eq!(f.find(&r), None, "{:?} → {:?}", text, r);
            prop_assert!(!r.contains(&secret), "{:?}", r);
        }
    }
}
