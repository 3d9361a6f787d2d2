//! The secret filter: nothing hive-c0re posts to a room may carry a secret.
//!
//! Two kinds of match: the hive's **known secrets** (the appservice tokens, the homeserver's
//! registration secret, the operator's password, every `api_key_file` and `secrets.files`
//! value), and **credential patterns** (API keys, access tokens, private keys) for secrets the
//! core was never told about. An agent's message that matches is refused and the agent told why
//! (the label, never the secret); the core's own notices (crash logs, diffs) are redacted.

use regex::Regex;

/// Known secrets shorter than this are not matched (too many false positives).
const MIN_SECRET_LEN: usize = 8;

pub struct SecretFilter {
    known: Vec<(String, String)>,
    patterns: Vec<(&'static str, Regex)>,
}

impl SecretFilter {
    /// `known`: (label, value) pairs; short or empty values are ignored.
    pub fn new(known: Vec<(String, String)>) -> Self {
        let patterns = [
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
        ]
        .into_iter()
        .map(|(label, re)| (label, Regex::new(re).expect("a valid pattern")))
        .collect();
        let known = known
            .into_iter()
            .map(|(l, v)| (l, v.trim().to_owned()))
            .filter(|(_, v)| v.len() >= MIN_SECRET_LEN)
            .collect();
        Self { known, patterns }
    }

    /// What kind of secret `text` holds, if any (a label, never the secret).
    pub fn find(&self, text: &str) -> Option<String> {
        for (label, value) in &self.known {
            if text.contains(value.as_str()) {
                return Some(label.clone());
            }
        }
        self.patterns
            .iter()
            .find(|(_, re)| re.is_match(text))
            .map(|(label, _)| (*label).to_owned())
    }

    /// `text` with every secret replaced by `[redacted: <label>]`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (label, value) in &self.known {
            out = out.replace(value.as_str(), &format!("[redacted: {label}]"));
        }
        for (label, re) in &self.patterns {
            out = re
                .replace_all(&out, format!("[redacted: {label}]").as_str())
                .into_owned();
        }
        out
    }

    /// The first secret in a message's `body` or `formatted_body`.
    pub fn find_in_content(&self, content: &serde_json::Value) -> Option<String> {
        ["body", "formatted_body"]
            .iter()
            .filter_map(|k| content.get(*k).and_then(|v| v.as_str()))
            .find_map(|t| self.find(t))
    }

    /// Redacts `body` and `formatted_body` in place; true if anything was found.
    pub fn redact_content(&self, content: &mut serde_json::Value) -> bool {
        let mut hit = false;
        for k in ["body", "formatted_body"] {
            if let Some(t) = content.get(k).and_then(|v| v.as_str())
                && self.find(t).is_some()
            {
                hit = true;
                content[k] = serde_json::Value::String(self.redact(t));
            }
        }
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_redacts() {
        let f = SecretFilter::new(vec![
            (
                "the appservice token".into(),
                "hs-token-abcdefgh12345".into(),
            ),
            ("too short".into(), "abc".into()),
        ]);
        let cases = [
            (
                "token is hs-token-abcdefgh12345!",
                Some("the appservice token"),
            ),
            (
                "sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                Some("an Anthropic API key"),
            ),
            (
                "key=sk-proj-abcdefghijklmnopqrstuvwxyz012345",
                Some("an OpenAI API key"),
            ),
            (
                "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
                Some("a GitHub token"),
            ),
            ("AKIAABCDEFGHIJKLMNOP", Some("an AWS access key")),
            ("-----BEGIN OPENSSH PRIVATE KEY-----", Some("a private key")),
            (
                "syt_b3BlcmF0b3I_AbCdEfGhIjKlMnOpQrSt_0x1y2z",
                Some("a Matrix access token"),
            ),
            ("abc is short and fine", None),
            ("the word skeleton, sk-short", None),
            ("ordinary text about tokens", None),
        ];
        for (text, want) in cases {
            assert_eq!(f.find(text).as_deref(), want, "{text}");
        }
        let r = f.redact("a hs-token-abcdefgh12345 b sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAA c");
        assert_eq!(
            r,
            "a [redacted: the appservice token] b [redacted: an Anthropic API key] c"
        );
        let mut content = serde_json::json!({"body": "x hs-token-abcdefgh12345", "formatted_body": "<p>x hs-token-abcdefgh12345</p>"});
        assert_eq!(
            f.find_in_content(&content).as_deref(),
            Some("the appservice token")
        );
        assert!(f.redact_content(&mut content));
        assert!(f.find_in_content(&content).is_none());
    }
}
