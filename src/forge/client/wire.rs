//! The forge APIs' shapes, as far as the hive reads and writes them: Gitea's and Forgejo's
//! (`modules/structs/pull.go`, `issue.go`, `issue_comment.go`, `pull_review.go`) and GitHub's,
//! which share these field names except for a review's line comments; and how an answer's
//! refusal, error and `Link` header are read.

use serde::{Deserialize, Serialize};

use super::MAX_ERROR_TEXT;

#[derive(Deserialize)]
pub(super) struct WireUser {
    pub(super) login: String,
}

#[derive(Deserialize)]
pub(super) struct WireLabel {
    pub(super) name: String,
}

#[derive(Deserialize)]
pub(super) struct WireBranch {
    #[serde(rename = "ref")]
    pub(super) reference: String,
    pub(super) sha: String,
}

#[derive(Deserialize)]
pub(super) struct WirePull {
    pub(super) number: u64,
    pub(super) title: String,
    pub(super) body: Option<String>,
    pub(super) user: Option<WireUser>,
    #[serde(default)]
    pub(super) labels: Vec<WireLabel>,
    pub(super) state: String,
    #[serde(default)]
    pub(super) merged: bool,
    pub(super) html_url: String,
    pub(super) head: WireBranch,
    pub(super) base: WireBranch,
}

#[derive(Deserialize)]
pub(super) struct WireIssue {
    pub(super) number: u64,
    pub(super) title: String,
    pub(super) body: Option<String>,
    pub(super) user: Option<WireUser>,
    #[serde(default)]
    pub(super) labels: Vec<WireLabel>,
    pub(super) state: String,
    pub(super) html_url: String,
    /// Gitea: `null` for an issue; GitHub: absent for an issue.
    pub(super) pull_request: Option<serde_json::Value>,
}

#[derive(Deserialize)]
pub(super) struct WireComment {
    pub(super) user: Option<WireUser>,
    pub(super) body: Option<String>,
}

#[derive(Serialize)]
pub(super) struct BodyOption<'a> {
    pub(super) body: &'a str,
}

#[derive(Serialize)]
pub(super) struct LabelsOption<'a> {
    pub(super) labels: &'a [String],
}

#[derive(Serialize)]
pub(super) struct ReviewersOption<'a> {
    pub(super) reviewers: &'a [String],
}

/// Gitea's and Forgejo's `CreatePullReviewOptions`.
#[derive(Serialize)]
pub(super) struct GiteaReview<'a> {
    pub(super) body: &'a str,
    pub(super) event: &'static str,
    pub(super) commit_id: &'a str,
    pub(super) comments: Vec<GiteaReviewComment<'a>>,
}

/// Gitea's `CreatePullReviewComment`: `new_position` is the line in the new file.
#[derive(Serialize)]
pub(super) struct GiteaReviewComment<'a> {
    pub(super) path: &'a str,
    pub(super) body: &'a str,
    pub(super) new_position: u64,
}

/// GitHub's "create a review for a pull request".
#[derive(Serialize)]
pub(super) struct GithubReview<'a> {
    pub(super) body: &'a str,
    pub(super) event: &'static str,
    pub(super) commit_id: &'a str,
    pub(super) comments: Vec<GithubReviewComment<'a>>,
}

#[derive(Serialize)]
pub(super) struct GithubReviewComment<'a> {
    pub(super) path: &'a str,
    pub(super) line: u64,
    pub(super) side: &'static str,
    pub(super) body: &'a str,
}

pub(super) fn login(u: Option<WireUser>) -> String {
    u.map(|u| u.login).unwrap_or_default()
}

pub(super) fn names(labels: Vec<WireLabel>) -> Vec<String> {
    labels.into_iter().map(|l| l.name).collect()
}

/// The longest prefix of `bytes` that is UTF-8 (a cap may cut a character).
pub(super) fn utf8_prefix(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(e) => String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned(),
    }
}

/// A forge's refusal as a person reads it: its JSON `message` (Gitea's and GitHub's errors
/// carry one), else the start of its text.
pub(super) fn refusal_text(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Message {
        message: String,
    }
    match serde_json::from_slice::<Message>(body) {
        Ok(m) => m.message.chars().take(MAX_ERROR_TEXT).collect(),
        Err(_) => {
            let text = utf8_prefix(&body[..body.len().min(MAX_ERROR_TEXT)]);
            if text.trim().is_empty() {
                "(no message)".into()
            } else {
                text.trim().to_owned()
            }
        }
    }
}

/// An HTTP error's text with its causes, without the URL (the call names it already).
pub(super) fn http_text(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The page a `Link` header's `rel="last"` names (`<https://…?page=7&per_page=100>;
/// rel="last"`), as GitHub and Gitea send it on paged lists.
pub(super) fn last_page(link: &str) -> Option<usize> {
    link.split(',').find_map(|part| {
        let mut fields = part.split(';');
        let target = fields.next()?.trim().strip_prefix('<')?.strip_suffix('>')?;
        if !fields.any(|p| p.trim() == "rel=\"last\"") {
            return None;
        }
        url::Url::parse(target)
            .ok()?
            .query_pairs()
            .find(|(k, _)| k == "page")
            .and_then(|(_, v)| v.parse().ok())
    })
}
