//! A stand-in for a Gitea/Forgejo server: the REST endpoints the hive's forge tools call and
//! the webhook deliveries a Forgejo sends, built from Gitea's published API description
//! (go-gitea/gitea `templates/swagger/v1_json.tmpl`, the structs in `modules/structs/`:
//! `pull.go`, `pull_review.go`, `issue.go`, `issue_comment.go`, `hook.go`). No real Gitea,
//! Forgejo or GitHub is reachable from the test machines; this is what the tests talk to.
//!
//! What it holds to, as Gitea does:
//! - `GET /api/v1/user`: the token's account (`User`, login [`BOT_LOGIN`]);
//! - base `/api/v1`; `Authorization: token <T>` on every call, else `401 {"message","url"}`;
//! - `404 {"message","url","errors"}` for an unknown repository, issue or pull request (an
//!   issue's number asked for as a pull request is not found);
//! - `GET  /repos/{o}/{r}/pulls/{n}` (PullRequest), `GET .../pulls/{n}.diff` (text),
//!   `GET .../pulls/{n}/files?page=&limit=` (ChangedFile list, `X-Total-Count`),
//!   `GET .../pulls/{n}/reviews` (PullReview list),
//!   `GET  /repos/{o}/{r}/issues/{n}` (Issue), `GET .../issues/{n}/comments` (Comment list),
//!   `POST .../issues/{n}/comments {body}` → 201 Comment, `POST .../issues/{n}/labels
//!   {labels}` → 200 the issue's labels (a name the repository does not have is dropped in
//!   silence: `GetLabelIDsInRepoByNames` "silently ignores label names that do not belong to
//!   the repository"), `POST .../pulls/{n}/requested_reviewers {reviewers, team_reviewers}` →
//!   201 PullReview list (an unknown user → 422), `POST .../pulls/{n}/reviews {event, body,
//!   commit_id, comments: [{path, body, old_position, new_position}]}` → 200 PullReview;
//!   `event` is one of `APPROVED`, `REQUEST_CHANGES`, `COMMENT`, `PENDING` (else 422), and
//!   `REQUEST_CHANGES` or `COMMENT` with neither a body nor a comment is 422.
//!
//! Stricter than Gitea, so a client bug shows: an unknown field in a body, a body that is not
//! the documented JSON, a call without the token, an endpoint it does not know, a line comment
//! on no line or on a file the pull request does not change: each is recorded in
//! [`Gitea::violations`] (and answered 4xx). Tests assert that list is empty at the end; the
//! handlers never panic (a panic in an axum task would surface as a timeout, not a message).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

mod api;

use api::{handle, issue_json, pull_json, repo_json, user_json};

/// The login of the token's account: what `GET /api/v1/user` answers, and the author of every
/// comment and review the hive posts.
pub const BOT_LOGIN: &str = "hive-bot";

/// Gitea's default (and our) page size for lists.
const DEFAULT_LIMIT: usize = 30;
/// Gitea's `MAX_RESPONSE_ITEMS` default.
const MAX_LIMIT: usize = 50;

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// The path under the site, e.g. `/api/v1/repos/acme/widgets/pulls/5/reviews`.
    pub path: String,
    pub query: Option<String>,
    /// The body, when it was JSON.
    pub body: Option<Value>,
    /// The status the stand-in answered.
    pub status: u16,
}

/// A pull request to seed.
#[derive(Debug, Clone)]
pub struct PullSeed {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub user: String,
    pub head_sha: String,
    pub base: String,
    pub head: String,
    /// (filename, status, additions, deletions).
    pub files: Vec<(String, String, u64, u64)>,
    pub diff: String,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone)]
struct Item {
    number: u64,
    title: String,
    body: String,
    user: String,
    labels: Vec<String>,
    pull: Option<Pull>,
    comments: Vec<(u64, String, String)>,
    reviews: Vec<Value>,
    requested: Vec<String>,
}

#[derive(Debug, Clone)]
struct Pull {
    head_sha: String,
    base: String,
    head: String,
    files: Vec<(String, String, u64, u64)>,
    diff: String,
}

#[derive(Debug, Default)]
struct Repo {
    owner: String,
    name: String,
    labels: Vec<String>,
    items: BTreeMap<u64, Item>,
}

#[derive(Debug, Default)]
struct St {
    url: String,
    token: String,
    users: Vec<String>,
    repos: BTreeMap<String, Repo>,
    received: Vec<Received>,
    violations: Vec<String>,
    next_id: u64,
}

/// The running stand-in.
#[derive(Clone)]
pub struct Gitea {
    /// The site, `http://127.0.0.1:<port>` (the API is under `/api/v1`).
    pub url: String,
    pub token: String,
    st: Arc<Mutex<St>>,
}

impl Gitea {
    /// Starts it on a loopback port; `token` is the only one it takes.
    pub async fn start(token: &str) -> Self {
        let st = Arc::new(Mutex::new(St {
            token: token.to_owned(),
            next_id: 100,
            ..St::default()
        }));
        let app = axum::Router::new().fallback(handle).with_state(st.clone());
        let url = super::serve_http(app).await;
        st.lock().unwrap().url = url.clone();
        Self {
            url,
            token: token.to_owned(),
            st,
        }
    }

    /// A user the forge knows (a reviewer must be one).
    pub fn add_user(&self, login: &str) {
        self.st.lock().unwrap().users.push(login.to_owned());
    }

    /// A repository `owner/name` with the labels it defines.
    pub fn add_repo(&self, full: &str, labels: &[&str]) {
        let (owner, name) = full.split_once('/').expect("owner/name");
        self.st.lock().unwrap().repos.insert(
            full.to_ascii_lowercase(),
            Repo {
                owner: owner.to_owned(),
                name: name.to_owned(),
                labels: labels.iter().map(|l| (*l).to_owned()).collect(),
                items: BTreeMap::new(),
            },
        );
    }

    pub fn add_pull(&self, repo: &str, p: PullSeed) {
        let mut st = self.st.lock().unwrap();
        let r = st
            .repos
            .get_mut(&repo.to_ascii_lowercase())
            .expect("seeded repo");
        r.items.insert(
            p.number,
            Item {
                number: p.number,
                title: p.title,
                body: p.body,
                user: p.user,
                labels: p.labels,
                pull: Some(Pull {
                    head_sha: p.head_sha,
                    base: p.base,
                    head: p.head,
                    files: p.files,
                    diff: p.diff,
                }),
                comments: vec![],
                reviews: vec![],
                requested: vec![],
            },
        );
    }

    pub fn add_issue(&self, repo: &str, number: u64, title: &str, body: &str, user: &str) {
        let mut st = self.st.lock().unwrap();
        let r = st
            .repos
            .get_mut(&repo.to_ascii_lowercase())
            .expect("seeded repo");
        r.items.insert(
            number,
            Item {
                number,
                title: title.into(),
                body: body.into(),
                user: user.into(),
                labels: vec![],
                pull: None,
                comments: vec![],
                reviews: vec![],
                requested: vec![],
            },
        );
    }

    /// A push to a pull request's branch: its head is `sha` from now on (what `GET .../pulls/{n}`
    /// and the next payloads say).
    pub fn set_head(&self, repo: &str, number: u64, sha: &str) {
        let mut st = self.st.lock().unwrap();
        let r = st
            .repos
            .get_mut(&repo.to_ascii_lowercase())
            .expect("seeded repo");
        let pull = r
            .items
            .get_mut(&number)
            .and_then(|i| i.pull.as_mut())
            .expect("a seeded pull request");
        pull.head_sha = sha.to_owned();
    }

    /// Every request, in order.
    pub fn received(&self) -> Vec<Received> {
        self.st.lock().unwrap().received.clone()
    }

    /// Every request but GETs: what changed something (or tried to).
    pub fn writes(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.method != "GET")
            .collect()
    }

    /// What the clients did against the documented contract, each said in a line.
    pub fn violations(&self) -> Vec<String> {
        self.st.lock().unwrap().violations.clone()
    }

    /// The labels on an item now.
    pub fn labels_of(&self, repo: &str, number: u64) -> Vec<String> {
        self.with_item(repo, number, |i| i.labels.clone())
    }

    /// The reviews posted on a pull request (as answered).
    pub fn reviews_of(&self, repo: &str, number: u64) -> Vec<Value> {
        self.with_item(repo, number, |i| i.reviews.clone())
    }

    /// The reviewers requested on a pull request.
    pub fn requested_of(&self, repo: &str, number: u64) -> Vec<String> {
        self.with_item(repo, number, |i| i.requested.clone())
    }

    /// The comments on an item: (author, body).
    pub fn comments_of(&self, repo: &str, number: u64) -> Vec<(String, String)> {
        self.with_item(repo, number, |i| {
            i.comments
                .iter()
                .map(|(_, u, b)| (u.clone(), b.clone()))
                .collect()
        })
    }

    fn with_item<T>(&self, repo: &str, number: u64, f: impl FnOnce(&Item) -> T) -> T {
        let st = self.st.lock().unwrap();
        let r = st
            .repos
            .get(&repo.to_ascii_lowercase())
            .expect("seeded repo");
        f(r.items.get(&number).expect("seeded item"))
    }

    /// Gitea's `PullRequestPayload` for `action` (`opened`, `synchronized`, `closed`, …) on a
    /// seeded pull request, sent by `sender`.
    pub fn pull_request_payload(
        &self,
        repo: &str,
        number: u64,
        action: &str,
        sender: &str,
    ) -> Value {
        let st = self.st.lock().unwrap();
        let r = &st.repos[&repo.to_ascii_lowercase()];
        let i = &r.items[&number];
        json!({
            "action": action,
            "number": number,
            "pull_request": pull_json(&st.url, r, i),
            "requested_reviewer": null,
            "repository": repo_json(&st.url, r),
            "sender": user_json(&st.url, sender),
            "commit_id": "",
            "review": null,
        })
    }

    /// Gitea's `IssuePayload` for `action` on a seeded issue.
    pub fn issue_payload(&self, repo: &str, number: u64, action: &str, sender: &str) -> Value {
        let st = self.st.lock().unwrap();
        let r = &st.repos[&repo.to_ascii_lowercase()];
        json!({
            "action": action,
            "number": number,
            "issue": issue_json(&st.url, r, &r.items[&number]),
            "repository": repo_json(&st.url, r),
            "sender": user_json(&st.url, sender),
            "commit_id": "",
        })
    }

    /// Gitea's `IssueCommentPayload` (`created`) for a comment by `sender` on a seeded item
    /// (`modules/structs/hook.go`: action, issue, pull_request, comment, repository, sender, is_pull).
    pub fn issue_comment_payload(
        &self,
        repo: &str,
        number: u64,
        sender: &str,
        body: &str,
    ) -> Value {
        let st = self.st.lock().unwrap();
        let r = &st.repos[&repo.to_ascii_lowercase()];
        let i = &r.items[&number];
        let html = format!(
            "{}/{}/{}/issues/{number}#issuecomment-1",
            st.url, r.owner, r.name
        );
        let mut payload = json!({
            "action": "created",
            "issue": issue_json(&st.url, r, i),
            "comment": {"id": 1, "html_url": html, "pull_request_url": "", "issue_url": "",
                        "user": user_json(&st.url, sender), "original_author": "",
                        "original_author_id": 0, "body": body, "assets": [],
                        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"},
            "repository": repo_json(&st.url, r),
            "sender": user_json(&st.url, sender),
            "is_pull": i.pull.is_some(),
        });
        // `pull_request` is `omitempty`: there only for a pull request's comment.
        if i.pull.is_some() {
            payload["pull_request"] = pull_json(&st.url, r, i);
        }
        payload
    }
}

/// The lowercase hex HMAC-SHA256 of `body` under `secret`: `X-Forgejo-Signature` and
/// `X-Gitea-Signature`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The headers a Forgejo sends with a delivery (and the `X-Gitea-*` and `X-GitHub-*` twins it
/// sends too), signed with `secret`.
pub fn forgejo_headers(
    secret: &str,
    event: &str,
    delivery: &str,
    body: &[u8],
) -> Vec<(String, String)> {
    let sig = signature(secret, body);
    let mut h = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    for p in ["Forgejo", "Gitea", "GitHub"] {
        h.push((format!("X-{p}-Event"), event.to_owned()));
        h.push((format!("X-{p}-Event-Type"), event.to_owned()));
        h.push((format!("X-{p}-Delivery"), delivery.to_owned()));
    }
    h.push(("X-Forgejo-Signature".into(), sig.clone()));
    h.push(("X-Gitea-Signature".into(), sig.clone()));
    h.push(("X-Hub-Signature-256".into(), format!("sha256={sig}")));
    h
}

/// Posts `body` to `hook_url` with `headers`, as a forge's webhook deliverer does.
pub async fn post_hook(
    hook_url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(hook_url).body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("POST {hook_url}: {e}"))
}

/// A delivery of `payload` as Forgejo signs it.
pub async fn deliver(
    hook_url: &str,
    secret: &str,
    event: &str,
    delivery: &str,
    payload: &Value,
) -> reqwest::Response {
    let body = serde_json::to_vec(payload).expect("json");
    post_hook(
        hook_url,
        &forgejo_headers(secret, event, delivery, &body),
        body,
    )
    .await
}
