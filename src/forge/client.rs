//! The forge REST API as the core calls it, with the token only the core holds: Gitea and
//! Forgejo (`<site>/api/v1`, `Authorization: token …`) and GitHub (`https://api.github.com`,
//! `Authorization: Bearer …`, its `Accept` and version headers). Both speak the same paths
//! under `/repos/{owner}/{repo}/`; what differs (the diff's address, the review's event
//! names and line comments, paging) is decided here by [`ForgeKind`].
//!
//! Every read is capped (a forge is trusted with the token, not with the core's memory):
//! JSON answers at [`MAX_ANSWER`], the diff at the cap its caller gives (stopped there and
//! said truncated), changed files at [`MAX_FILES`]. The token is only ever in a request's
//! header: never in a URL, an error's text or a `Debug` line. (Shapes: go-gitea/gitea
//! `modules/structs/pull.go`, `pull_review.go`, `issue.go`, `issue_label.go` and its swagger
//! document; GitHub's REST reference.)

use std::fmt;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;

use super::{ForgeKind, ItemRef};
use wire::*;

mod user;
mod wire;

/// Most changed files read of one pull request.
pub const MAX_FILES: usize = 300;
/// Largest JSON answer read from the forge.
pub const MAX_ANSWER: usize = 8 << 20;
/// Most of a refusal's body kept for its message.
const MAX_ERROR_TEXT: usize = 500;
/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Files asked per page: Gitea's default `MAX_RESPONSE_ITEMS`, GitHub's largest page.
const GITEA_PAGE: usize = 50;
const GITHUB_PAGE: usize = 100;
/// How many of an item's comments are kept: the last ones.
pub const LAST_COMMENTS: usize = 20;

/// One forge's API, as the core calls it.
#[derive(Clone)]
pub struct ForgeClient {
    pub kind: ForgeKind,
    pub api_url: Url,
    token: String,
    http: reqwest::Client,
}

impl fmt::Debug for ForgeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForgeClient")
            .field("kind", &self.kind)
            .field("api_url", &self.api_url.as_str())
            .field("token", &"<held by the core>")
            .finish()
    }
}

/// Why a forge call failed. Its text names the call (`GET /api/v1/repos/acme/widgets/pulls/5`)
/// and what the forge said; never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForgeError {
    #[error("{call}: the forge answered {status}: {message}")]
    Status {
        call: String,
        status: u16,
        message: String,
    },
    #[error("{call}: {message}")]
    Http { call: String, message: String },
    #[error("{call}: the answer is not what the forge's API describes: {message}")]
    Decode { call: String, message: String },
}

/// A file a pull request changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedFile {
    pub filename: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub additions: u64,
    #[serde(default)]
    pub deletions: u64,
}

/// A pull request as the tools show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullRequest {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub author: String,
    /// `open` or `closed`.
    pub state: String,
    pub merged: bool,
    pub url: String,
    pub head_sha: String,
    /// The branch it merges into, and the branch it comes from.
    pub base: String,
    pub head: String,
    pub labels: Vec<String>,
}

/// An issue (or a pull request read as an issue) as the tools show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub author: String,
    pub state: String,
    pub labels: Vec<String>,
    pub url: String,
    pub is_pull: bool,
}

/// One comment of an item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comment {
    pub author: String,
    pub body: String,
}

/// A pull request's diff, read up to a cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    pub text: String,
    /// The forge had more than the cap: `text` is its beginning.
    pub truncated: bool,
}

/// One line comment of a review: on `line` of `path` in the pull request's new version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineComment {
    pub path: String,
    pub line: u64,
    pub body: String,
}

/// What a review asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewEvent {
    RequestChanges,
    Comment,
    Approve,
}

impl ReviewEvent {
    /// The event's name in `kind`'s API: Gitea and Forgejo say `APPROVED`, GitHub `APPROVE`.
    pub fn wire(self, kind: ForgeKind) -> &'static str {
        match (self, kind) {
            (ReviewEvent::RequestChanges, _) => "REQUEST_CHANGES",
            (ReviewEvent::Comment, _) => "COMMENT",
            (ReviewEvent::Approve, ForgeKind::Github) => "APPROVE",
            (ReviewEvent::Approve, ForgeKind::Gitea | ForgeKind::Forgejo) => "APPROVED",
        }
    }
}

/// The API's base for a forge at `site`: Gitea's and Forgejo's under `/api/v1` of the site
/// (which may itself be under a path), GitHub's the URL as given (`https://api.github.com`,
/// or an Enterprise server's `/api/v3`).
pub fn api_base(kind: ForgeKind, site: &Url) -> Url {
    let mut url = site.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut segs) = url.path_segments_mut() {
        segs.pop_if_empty();
        if kind != ForgeKind::Github {
            segs.extend(["api", "v1"]);
        }
    }
    url
}

/// One answer, read.
struct Answer {
    body: Vec<u8>,
    truncated: bool,
    total: Option<usize>,
    /// The last page, from a `Link` header's `rel="last"` (paged lists only).
    last_page: Option<usize>,
}

impl ForgeClient {
    pub fn new(kind: ForgeKind, api_url: Url, token: String, http: reqwest::Client) -> Self {
        Self {
            kind,
            api_url,
            token,
            http,
        }
    }

    /// `<api>/repos/<owner>/<repo>/<segments…>?<query>`; each segment escaped.
    fn url(&self, item: &ItemRef, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.api_url.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty();
            segs.extend(["repos", item.repo.owner(), item.repo.name()]);
            segs.extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    /// A request with the kind's auth and headers; `accept` instead of the JSON default.
    fn request_as(&self, method: Method, url: Url, accept: Option<&str>) -> RequestBuilder {
        let rb = self.http.request(method, url).timeout(TIMEOUT);
        match self.kind {
            ForgeKind::Gitea | ForgeKind::Forgejo => rb
                .header(header::AUTHORIZATION, format!("token {}", self.token))
                .header(header::ACCEPT, accept.unwrap_or("application/json")),
            ForgeKind::Github => rb
                .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
                .header(
                    header::ACCEPT,
                    accept.unwrap_or("application/vnd.github+json"),
                )
                .header("X-GitHub-Api-Version", "2022-11-28")
                .header(header::USER_AGENT, "hyperhive"),
        }
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.request_as(method, url, None)
    }

    /// Sends `rb` and reads its answer up to `cap` bytes; a status that is not a success is
    /// [`ForgeError::Status`] with the forge's message.
    async fn send(&self, call: &str, rb: RequestBuilder, cap: usize) -> Result<Answer, ForgeError> {
        let http = |e| ForgeError::Http {
            call: call.to_owned(),
            message: http_text(e),
        };
        let mut resp = rb.send().await.map_err(http)?;
        let status = resp.status();
        let total = resp
            .headers()
            .get("x-total-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let last_page = resp
            .headers()
            .get(header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(last_page);
        let cap = if status.is_success() {
            cap
        } else {
            MAX_ERROR_TEXT * 8
        };
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = resp.chunk().await.map_err(http)? {
            let room = cap - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(ForgeError::Status {
                call: call.to_owned(),
                status: status.as_u16(),
                message: refusal_text(&body),
            });
        }
        Ok(Answer {
            body,
            truncated,
            total,
            last_page,
        })
    }

    /// A JSON answer, decoded.
    async fn get_json<T: DeserializeOwned>(
        &self,
        url: Url,
    ) -> Result<(T, Option<usize>), ForgeError> {
        self.get_paged(url).await.map(|(v, total, _)| (v, total))
    }

    /// [`Self::get_json`] with the last page the `Link` header names.
    async fn get_paged<T: DeserializeOwned>(
        &self,
        url: Url,
    ) -> Result<(T, Option<usize>, Option<usize>), ForgeError> {
        let call = format!("GET {}", url.path());
        let a = self
            .send(&call, self.request(Method::GET, url), MAX_ANSWER)
            .await?;
        let decode = |message: String| ForgeError::Decode {
            call: call.clone(),
            message,
        };
        if a.truncated {
            return Err(decode(format!("more than {MAX_ANSWER} bytes")));
        }
        let v = serde_json::from_slice(&a.body).map_err(|e| decode(e.to_string()))?;
        Ok((v, a.total, a.last_page))
    }

    /// A write: `body` as JSON, any success status.
    async fn post<B: Serialize>(&self, url: Url, body: &B) -> Result<(), ForgeError> {
        let call = format!("POST {}", url.path());
        self.send(
            &call,
            self.request(Method::POST, url).json(body),
            MAX_ERROR_TEXT,
        )
        .await
        .map(drop)
    }

    /// The pull request `item`.
    pub async fn get_pr(&self, item: &ItemRef) -> Result<PullRequest, ForgeError> {
        let n = item.number.to_string();
        let (p, _): (WirePull, _) = self.get_json(self.url(item, &["pulls", &n], &[])).await?;
        Ok(PullRequest {
            number: p.number,
            title: p.title,
            body: p.body.unwrap_or_default(),
            author: login(p.user),
            state: p.state,
            merged: p.merged,
            url: p.html_url,
            head_sha: p.head.sha,
            base: p.base.reference,
            head: p.head.reference,
            labels: names(p.labels),
        })
    }

    /// The pull request's unified diff, read up to `cap` bytes (stopped there: `truncated`).
    /// Gitea and Forgejo serve it at `pulls/{n}.diff`, GitHub at `pulls/{n}` by `Accept`.
    pub async fn pr_diff(&self, item: &ItemRef, cap: usize) -> Result<Diff, ForgeError> {
        let rb = match self.kind {
            ForgeKind::Gitea | ForgeKind::Forgejo => {
                let url = self.url(item, &["pulls", &format!("{}.diff", item.number)], &[]);
                self.request_as(Method::GET, url, Some("text/plain"))
            }
            ForgeKind::Github => {
                let url = self.url(item, &["pulls", &item.number.to_string()], &[]);
                self.request_as(Method::GET, url, Some("application/vnd.github.diff"))
            }
        };
        let call = match self.kind {
            ForgeKind::Github => format!("GET the diff of {item}"),
            _ => format!("GET {item}.diff"),
        };
        let a = self.send(&call, rb, cap).await?;
        Ok(Diff {
            text: utf8_prefix(&a.body),
            truncated: a.truncated,
        })
    }

    /// The files a pull request changes, every page, at most [`MAX_FILES`]. Pages end at an
    /// empty or short page, or at the count the forge's `X-Total-Count` gives.
    pub async fn pr_files(&self, item: &ItemRef) -> Result<Vec<ChangedFile>, ForgeError> {
        let n = item.number.to_string();
        let mut files: Vec<ChangedFile> = Vec::new();
        for page in 1.. {
            let (per, query) = match self.kind {
                ForgeKind::Github => (
                    GITHUB_PAGE,
                    [
                        ("per_page", GITHUB_PAGE.to_string()),
                        ("page", page.to_string()),
                    ],
                ),
                _ => (
                    GITEA_PAGE,
                    [
                        ("page", page.to_string()),
                        ("limit", GITEA_PAGE.to_string()),
                    ],
                ),
            };
            let (got, total): (Vec<ChangedFile>, _) = self
                .get_json(self.url(item, &["pulls", &n, "files"], &query))
                .await?;
            let short = got.len() < per;
            files.extend(got);
            if short
                || files.len() >= MAX_FILES
                || total.is_some_and(|t| files.len() >= t)
                || page * per >= MAX_FILES
            {
                break;
            }
        }
        files.truncate(MAX_FILES);
        Ok(files)
    }

    /// The issue (or pull request) `item`, as an issue.
    pub async fn get_issue(&self, item: &ItemRef) -> Result<Issue, ForgeError> {
        let n = item.number.to_string();
        let (i, _): (WireIssue, _) = self.get_json(self.url(item, &["issues", &n], &[])).await?;
        Ok(Issue {
            number: i.number,
            title: i.title,
            body: i.body.unwrap_or_default(),
            author: login(i.user),
            state: i.state,
            labels: names(i.labels),
            url: i.html_url,
            is_pull: i.pull_request.is_some_and(|v| !v.is_null()),
        })
    }

    /// The item's last [`LAST_COMMENTS`] comments, oldest first. Gitea answers them all at
    /// once; GitHub pages them: its first page, then the last page its `Link` header names
    /// (and the one before, when the last is short).
    pub async fn issue_comments(&self, item: &ItemRef) -> Result<Vec<Comment>, ForgeError> {
        let n = item.number.to_string();
        let paged = self.kind == ForgeKind::Github;
        let all: Vec<WireComment> = self
            .last_of(item, &["issues", &n, "comments"], paged)
            .await?;
        Ok(all
            .into_iter()
            .map(|c| Comment {
                author: login(c.user),
                body: c.body.unwrap_or_default(),
            })
            .collect())
    }

    /// The bodies of the pull request's last [`LAST_COMMENTS`] reviews, oldest first (both
    /// kinds page them).
    pub async fn review_bodies(&self, item: &ItemRef) -> Result<Vec<String>, ForgeError> {
        let n = item.number.to_string();
        let all: Vec<WireComment> = self.last_of(item, &["pulls", &n, "reviews"], true).await?;
        Ok(all.into_iter().filter_map(|c| c.body).collect())
    }

    /// The last [`LAST_COMMENTS`] entries of a list at `segments`: one call when not `paged`;
    /// else page 1, then the `Link` header's last page and the one before it when needed.
    async fn last_of<T: DeserializeOwned>(
        &self,
        item: &ItemRef,
        segments: &[&str],
        paged: bool,
    ) -> Result<Vec<T>, ForgeError> {
        let page_url = |page: usize| {
            let query: Vec<(&str, String)> = match (paged, self.kind) {
                (false, _) => vec![],
                (true, ForgeKind::Github) => vec![
                    ("per_page", GITHUB_PAGE.to_string()),
                    ("page", page.to_string()),
                ],
                (true, _) => vec![
                    ("page", page.to_string()),
                    ("limit", GITEA_PAGE.to_string()),
                ],
            };
            self.url(item, segments, &query)
        };
        let (mut all, _, last): (Vec<T>, _, _) = self.get_paged(page_url(1)).await?;
        let last = last.filter(|_| paged).unwrap_or(1);
        if last > 1 {
            let (tail, _, _): (Vec<T>, _, _) = self.get_paged(page_url(last)).await?;
            if tail.len() < LAST_COMMENTS && last > 2 {
                let (before, _, _): (Vec<T>, _, _) = self.get_paged(page_url(last - 1)).await?;
                all = before;
            }
            all.extend(tail);
        }
        let skip = all.len().saturating_sub(LAST_COMMENTS);
        all.drain(..skip);
        Ok(all)
    }

    /// Comments `body` on the item.
    pub async fn comment(&self, item: &ItemRef, body: &str) -> Result<(), ForgeError> {
        let n = item.number.to_string();
        self.post(
            self.url(item, &["issues", &n, "comments"], &[]),
            &BodyOption { body },
        )
        .await
    }

    /// Adds `labels` (by name) to the item.
    pub async fn add_labels(&self, item: &ItemRef, labels: &[String]) -> Result<(), ForgeError> {
        let n = item.number.to_string();
        self.post(
            self.url(item, &["issues", &n, "labels"], &[]),
            &LabelsOption { labels },
        )
        .await
    }

    /// Asks `reviewers` (forge logins) to review the pull request.
    pub async fn request_review(
        &self,
        item: &ItemRef,
        reviewers: &[String],
    ) -> Result<(), ForgeError> {
        let n = item.number.to_string();
        let url = self.url(item, &["pulls", &n, "requested_reviewers"], &[]);
        self.post(url, &ReviewersOption { reviewers }).await
    }

    /// A formal review of the pull request at `commit_id`, with line comments on its new
    /// version.
    pub async fn review(
        &self,
        item: &ItemRef,
        event: ReviewEvent,
        body: &str,
        comments: &[LineComment],
        commit_id: &str,
    ) -> Result<(), ForgeError> {
        let n = item.number.to_string();
        let url = self.url(item, &["pulls", &n, "reviews"], &[]);
        let event_name = event.wire(self.kind);
        match self.kind {
            ForgeKind::Gitea | ForgeKind::Forgejo => {
                let review = GiteaReview {
                    body,
                    event: event_name,
                    commit_id,
                    comments: comments
                        .iter()
                        .map(|c| GiteaReviewComment {
                            path: &c.path,
                            body: &c.body,
                            new_position: c.line,
                        })
                        .collect(),
                };
                self.post(url, &review).await
            }
            ForgeKind::Github => {
                let review = GithubReview {
                    body,
                    event: event_name,
                    commit_id,
                    comments: comments
                        .iter()
                        .map(|c| GithubReviewComment {
                            path: &c.path,
                            line: c.line,
                            side: "RIGHT",
                            body: &c.body,
                        })
                        .collect(),
                };
                self.post(url, &review).await
            }
        }
    }
}

#[cfg(test)]
mod tests;
