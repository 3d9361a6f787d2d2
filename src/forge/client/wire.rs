//! The forge APIs' shapes, as far as the hive reads and writes them: Gitea's and Forgejo's
//! (`modules/structs/pull.go`, `issue.go`, `issue_comment.go`, `pull_review.go`) and GitHub's,
//! which share these field names except for a review's line comments.

use serde::{Deserialize, Serialize};

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
