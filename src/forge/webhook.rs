//! A webhook delivery: its signature checked in constant time, its delivery id and event name
//! read from its headers, its payload read into a typed [`ForgeEvent`].
//!
//! Rules:
//! - the signature is the lowercase hex HMAC-SHA256 of the raw body under the server's webhook
//!   secret. Forgejo: `X-Forgejo-Signature`, else its twin `X-Gitea-Signature` (Forgejo sends
//!   both); Gitea: `X-Gitea-Signature`; GitHub: `X-Hub-Signature-256: sha256=<hex>`. Compared
//!   by `hmac`'s `verify_slice` (constant time). No header is [`SignatureError::Missing`];
//!   anything but 64 hex digits (after GitHub's prefix) is [`SignatureError::NotHex`]; another
//!   MAC is [`SignatureError::Wrong`];
//! - the delivery id (`X-Forgejo-Delivery` / `X-Gitea-Delivery` / `X-GitHub-Delivery`) is 1 to
//!   128 printable ASCII characters, no space; the event name (`X-Forgejo-Event` /
//!   `X-Gitea-Event` / `X-GitHub-Event`) 1 to 64 of `[a-z0-9_]`;
//! - Gitea and Forgejo send one payload shape (`modules/structs/hook.go`), GitHub a close
//!   cousin: both read into one lenient [`Payload`] of only the fields the hive uses. What is
//!   followed (anything else is [`Read::Ignored`], with why):
//!   - Gitea/Forgejo `pull_request` (and its `pull_request_*` event types): `opened`,
//!     `reopened`, `edited`, `closed` (merged when `pull_request.merged`), `synchronized`
//!     (Pushed), `label_updated`/`label_cleared` (Labeled), `review_requested`, `reviewed`;
//!     the review events `pull_request_approved`/`_rejected`/`_comment` (and the
//!     `pull_request_review_*` event types), verdict from `review.type`, body `review.content`;
//!     `issues` (and `issue_*`): `opened`, `reopened`, `edited`, `closed`,
//!     `label_updated`/`label_cleared`; `issue_comment`: `created` (a pull request's when
//!     `is_pull`);
//!   - GitHub `pull_request`: the same, `synchronize` (Pushed), `labeled`/`unlabeled`;
//!     `issues`; `issue_comment` `created` (a pull request's when `issue.pull_request` is
//!     present); `pull_request_review` `submitted`, verdict from `review.state`;
//! - a followed payload without the fields it needs is a [`PayloadError`] naming the field; a
//!   repository `full_name` that is no [`RepoName`] is one too.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use serde::{Deserialize, Serialize};

use super::{BadRepoName, ForgeKind, ItemKind, ItemRef, RepoName};

/// What happened to a pull request or an issue, as the hive follows it: the payload of a
/// delivery read once into this, stored, and handed on (the raw payload is not kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgeEvent {
    pub item: ItemRef,
    pub kind: ItemKind,
    pub action: Action,
    /// The forge login of who did it (the sender).
    pub actor: String,
    pub title: String,
    /// The item's web page.
    pub url: String,
    /// The forge login of the item's author.
    pub author: String,
    pub labels: Vec<String>,
    /// A pull request's head commit.
    pub head_sha: Option<String>,
}

/// What was done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    Opened,
    Reopened,
    Edited,
    Closed,
    Merged,
    /// New commits on a pull request's head.
    Pushed,
    Labeled,
    ReviewRequested {
        reviewer: String,
    },
    Commented {
        body: String,
        url: String,
    },
    Reviewed {
        verdict: Verdict,
        body: String,
    },
}

/// A review's outcome as the forge reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approved,
    ChangesRequested,
    Commented,
}

/// Why a delivery's signature does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no {0} header")]
    Missing(&'static str),
    #[error("the {0} header is not a hex HMAC-SHA256")]
    NotHex(&'static str),
    #[error("the {0} header does not match the body under the webhook secret")]
    Wrong(&'static str),
}

/// The signature headers of `kind`, in the order they are read.
fn signature_headers(kind: ForgeKind) -> &'static [&'static str] {
    match kind {
        ForgeKind::Forgejo => &["x-forgejo-signature", "x-gitea-signature"],
        ForgeKind::Gitea => &["x-gitea-signature"],
        ForgeKind::Github => &["x-hub-signature-256"],
    }
}

/// Checks the delivery's signature over `body` under `secret`, in constant time.
pub fn verify(
    kind: ForgeKind,
    headers: &HeaderMap,
    secret: &[u8],
    body: &[u8],
) -> Result<(), SignatureError> {
    let names = signature_headers(kind);
    let (name, value) = names
        .iter()
        .find_map(|n| headers.get(*n).map(|v| (*n, v)))
        .ok_or(SignatureError::Missing(names[0]))?;
    let text = value.to_str().map_err(|_| SignatureError::NotHex(name))?;
    let hex = match kind {
        ForgeKind::Github => text
            .strip_prefix("sha256=")
            .ok_or(SignatureError::NotHex(name))?,
        ForgeKind::Gitea | ForgeKind::Forgejo => text,
    };
    let mac_bytes = decode_hex(hex).ok_or(SignatureError::NotHex(name))?;
    if mac_bytes.len() != 32 {
        return Err(SignatureError::NotHex(name));
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("hmac takes any key length");
    mac.update(body);
    mac.verify_slice(&mac_bytes)
        .map_err(|_| SignatureError::Wrong(name))
}

/// Lowercase or uppercase hex into bytes; `None` for anything else.
fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// The lowercase hex HMAC-SHA256 of `body` under `secret`: what a forge puts in its signature
/// header (the tests and the stand-in sign with it).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("hmac takes any key length");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A delivery's id and event name, from its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub event: String,
}

/// Why a delivery's headers do not say what it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("no {0} header")]
    Missing(&'static str),
    #[error("the {header} header is not {expected}")]
    Bad {
        header: &'static str,
        expected: &'static str,
    },
}

impl Delivery {
    /// The delivery id and event name of `kind` (Forgejo's own headers first, then their
    /// `X-Gitea-*` twins).
    pub fn from_headers(kind: ForgeKind, headers: &HeaderMap) -> Result<Self, HeaderError> {
        let (ids, events): (&[&'static str], &[&'static str]) = match kind {
            ForgeKind::Forgejo => (
                &["x-forgejo-delivery", "x-gitea-delivery"],
                &["x-forgejo-event", "x-gitea-event"],
            ),
            ForgeKind::Gitea => (&["x-gitea-delivery"], &["x-gitea-event"]),
            ForgeKind::Github => (&["x-github-delivery"], &["x-github-event"]),
        };
        let id = header(headers, ids, "1 to 128 printable ASCII characters", |s| {
            (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
        })?;
        let event = header(headers, events, "1 to 64 of [a-z0-9_]", |s| {
            (1..=64).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })?;
        Ok(Self { id, event })
    }
}

/// The first of `names` present, checked by `ok`.
fn header(
    headers: &HeaderMap,
    names: &[&'static str],
    expected: &'static str,
    ok: impl Fn(&str) -> bool,
) -> Result<String, HeaderError> {
    let (name, value) = names
        .iter()
        .find_map(|n| headers.get(*n).map(|v| (*n, v)))
        .ok_or(HeaderError::Missing(names[0]))?;
    let bad = HeaderError::Bad {
        header: name,
        expected,
    };
    let s = value.to_str().map_err(|_| bad.clone())?;
    if ok(s) { Ok(s.to_owned()) } else { Err(bad) }
}

/// Why a payload of a followed event cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the payload is not JSON of the expected shape: {0}")]
    NotJson(String),
    #[error("the payload has no {0}")]
    Missing(&'static str),
    #[error("repository.full_name: {0}")]
    BadRepo(#[from] BadRepoName),
    #[error("{field} is {value:?}, not one the hive knows")]
    Unknown { field: &'static str, value: String },
}

/// What a delivery's payload is to the hive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// An event the hive follows (boxed: it is the big one).
    Event(Box<ForgeEvent>),
    /// An event it does not follow, and why.
    Ignored(String),
}

impl Read {
    pub fn event(self) -> Option<ForgeEvent> {
        match self {
            Read::Event(e) => Some(*e),
            Read::Ignored(_) => None,
        }
    }
}

/// The payload of `event_name` from a forge of `kind`: the event, `None` for one the hive
/// does not follow.
pub fn parse(
    kind: ForgeKind,
    event_name: &str,
    body: &[u8],
) -> Result<Option<ForgeEvent>, PayloadError> {
    read(kind, event_name, body).map(Read::event)
}

/// A pull request, issue or comment author, a sender: Gitea's `User` (`login`, and
/// `username` as it also marshals it), GitHub's (`login`).
#[derive(Debug, Default, Deserialize)]
struct User {
    login: Option<String>,
    username: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Label {
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Branch {
    sha: Option<String>,
}

/// `pull_request`, or `issue` (whose `pull_request` is present for a pull request's).
#[derive(Debug, Default, Deserialize)]
struct Item {
    number: Option<u64>,
    title: Option<String>,
    html_url: Option<String>,
    user: Option<User>,
    #[serde(default)]
    labels: Option<Vec<Label>>,
    head: Option<Branch>,
    merged: Option<bool>,
    pull_request: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct Comment {
    body: Option<String>,
    html_url: Option<String>,
}

/// Gitea's `ReviewPayload` (`type`, `content`) and GitHub's review (`state`, `body`).
#[derive(Debug, Default, Deserialize)]
struct Review {
    #[serde(rename = "type")]
    kind: Option<String>,
    content: Option<String>,
    state: Option<String>,
    body: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Repository {
    full_name: Option<String>,
}

/// Gitea's `PullRequestPayload`, `IssuePayload`, `IssueCommentPayload` and GitHub's cousins
/// as one: only the fields read, everything optional (what is required is checked per event,
/// so the error names it).
#[derive(Debug, Default, Deserialize)]
struct Payload {
    action: Option<String>,
    number: Option<u64>,
    pull_request: Option<Item>,
    issue: Option<Item>,
    comment: Option<Comment>,
    review: Option<Review>,
    requested_reviewer: Option<User>,
    repository: Option<Repository>,
    sender: Option<User>,
    #[serde(default)]
    is_pull: bool,
}

/// The family of a followed event name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    PullRequest,
    Review,
    Issues,
    Comment,
}

fn family(kind: ForgeKind, event: &str) -> Option<Family> {
    match kind {
        ForgeKind::Github => match event {
            "pull_request" => Some(Family::PullRequest),
            "pull_request_review" => Some(Family::Review),
            "issues" => Some(Family::Issues),
            "issue_comment" => Some(Family::Comment),
            _ => None,
        },
        ForgeKind::Gitea | ForgeKind::Forgejo => match event {
            "pull_request_approved" | "pull_request_rejected" | "pull_request_comment" => {
                Some(Family::Review)
            }
            e if e.starts_with("pull_request_review_") && e != "pull_request_review_request" => {
                Some(Family::Review)
            }
            e if e == "pull_request" || e.starts_with("pull_request_") => Some(Family::PullRequest),
            "issue_comment" => Some(Family::Comment),
            e if e == "issues" || e.starts_with("issue_") => Some(Family::Issues),
            _ => None,
        },
    }
}

/// What the hive makes of a delivery's payload.
pub fn read(kind: ForgeKind, event_name: &str, body: &[u8]) -> Result<Read, PayloadError> {
    let Some(fam) = family(kind, event_name) else {
        return Ok(Read::Ignored(format!(
            "{event_name} events are not followed"
        )));
    };
    let p: Payload =
        serde_json::from_slice(body).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    let action = p.action.as_deref().ok_or(PayloadError::Missing("action"))?;
    let ignored = || {
        Ok(Read::Ignored(format!(
            "{event_name} {action} is not followed"
        )))
    };
    let github = kind == ForgeKind::Github;
    // A comment on a pull request in Gitea's review comment event (`pull_request_comment` is
    // both the review comment's event and a pull request comment's event type).
    let fam = if fam == Family::Review && p.comment.is_some() && p.review.is_none() {
        Family::Comment
    } else {
        fam
    };
    let (item_field, kind_of, act) = match fam {
        Family::PullRequest => {
            let pr = p.pull_request.as_ref();
            let act = match action {
                "opened" => Action::Opened,
                "reopened" => Action::Reopened,
                "edited" => Action::Edited,
                "closed" if pr.and_then(|i| i.merged).unwrap_or(false) => Action::Merged,
                "closed" => Action::Closed,
                "synchronized" if !github => Action::Pushed,
                "synchronize" if github => Action::Pushed,
                "label_updated" | "label_cleared" if !github => Action::Labeled,
                "labeled" | "unlabeled" if github => Action::Labeled,
                // A team asked (GitHub's `requested_team`, Gitea's team reviewers) names no
                // login: nobody to tell, and not the forge's mistake.
                "review_requested" if p.requested_reviewer.is_none() => {
                    return Ok(Read::Ignored(format!(
                        "{event_name} review_requested of no user (a team) is not followed"
                    )));
                }
                "review_requested" => Action::ReviewRequested {
                    reviewer: login(p.requested_reviewer.as_ref(), "requested_reviewer.login")?,
                },
                "reviewed" if !github && p.review.is_some() => review(kind, event_name, &p)?,
                _ => return ignored(),
            };
            ("pull_request", ItemKind::PullRequest, act)
        }
        Family::Review => {
            if !(github && action == "submitted" || !github && action == "reviewed") {
                return ignored();
            }
            (
                "pull_request",
                ItemKind::PullRequest,
                review(kind, event_name, &p)?,
            )
        }
        Family::Issues => {
            let act = match action {
                "opened" => Action::Opened,
                "reopened" => Action::Reopened,
                "edited" => Action::Edited,
                "closed" => Action::Closed,
                "label_updated" | "label_cleared" if !github => Action::Labeled,
                "labeled" | "unlabeled" if github => Action::Labeled,
                _ => return ignored(),
            };
            let is_pull = p.issue.as_ref().is_some_and(|i| i.pull_request.is_some());
            ("issue", pull_if(is_pull), act)
        }
        Family::Comment => {
            if action != "created" {
                return ignored();
            }
            let c = p.comment.as_ref().ok_or(PayloadError::Missing("comment"))?;
            let act = Action::Commented {
                body: c
                    .body
                    .clone()
                    .ok_or(PayloadError::Missing("comment.body"))?,
                url: c.html_url.clone().unwrap_or_default(),
            };
            if p.issue.is_some() {
                let is_pull =
                    p.is_pull || p.issue.as_ref().is_some_and(|i| i.pull_request.is_some());
                ("issue", pull_if(is_pull), act)
            } else {
                ("pull_request", ItemKind::PullRequest, act)
            }
        }
    };
    event(&p, item_field, kind_of, act).map(|e| Read::Event(Box::new(e)))
}

fn pull_if(is_pull: bool) -> ItemKind {
    if is_pull {
        ItemKind::PullRequest
    } else {
        ItemKind::Issue
    }
}

fn login(user: Option<&User>, field: &'static str) -> Result<String, PayloadError> {
    user.and_then(|u| {
        [&u.login, &u.username]
            .into_iter()
            .flatten()
            .find(|l| !l.is_empty())
            .cloned()
    })
    .ok_or(PayloadError::Missing(field))
}

/// A review: Gitea's `review.type` (`pull_request_review_approved`, …; else the event name),
/// GitHub's `review.state` (`approved`, `changes_requested`, `commented`).
fn review(kind: ForgeKind, event_name: &str, p: &Payload) -> Result<Action, PayloadError> {
    let r = p.review.as_ref().ok_or(PayloadError::Missing("review"))?;
    let (field, word, body) = match kind {
        ForgeKind::Github => (
            "review.state",
            r.state
                .clone()
                .ok_or(PayloadError::Missing("review.state"))?,
            r.body.clone(),
        ),
        ForgeKind::Gitea | ForgeKind::Forgejo => (
            "review.type",
            r.kind
                .clone()
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| event_name.to_owned()),
            r.content.clone(),
        ),
    };
    let w = word.to_ascii_lowercase();
    let verdict = if w.ends_with("approved") {
        Verdict::Approved
    } else if w.ends_with("rejected") || w == "changes_requested" {
        Verdict::ChangesRequested
    } else if w.ends_with("comment") || w == "commented" {
        Verdict::Commented
    } else {
        return Err(PayloadError::Unknown { field, value: word });
    };
    Ok(Action::Reviewed {
        verdict,
        body: body.unwrap_or_default(),
    })
}

/// The event of `act` on the payload's item (`pull_request` or `issue`).
fn event(
    p: &Payload,
    item_field: &'static str,
    kind: ItemKind,
    action: Action,
) -> Result<ForgeEvent, PayloadError> {
    let (item, number_field, title_field, url_field, author_field) = match item_field {
        "pull_request" => (
            p.pull_request.as_ref(),
            "pull_request.number",
            "pull_request.title",
            "pull_request.html_url",
            "pull_request.user.login",
        ),
        _ => (
            p.issue.as_ref(),
            "issue.number",
            "issue.title",
            "issue.html_url",
            "issue.user.login",
        ),
    };
    let item = item.ok_or(PayloadError::Missing(item_field))?;
    let full_name = p
        .repository
        .as_ref()
        .and_then(|r| r.full_name.as_deref())
        .ok_or(PayloadError::Missing("repository.full_name"))?;
    let repo = RepoName::parse(full_name)?;
    let number = item
        .number
        .or(p.number)
        .filter(|n| *n > 0)
        .ok_or(PayloadError::Missing(number_field))?;
    Ok(ForgeEvent {
        item: ItemRef { repo, number },
        kind,
        action,
        actor: login(p.sender.as_ref(), "sender.login")?,
        title: item
            .title
            .clone()
            .ok_or(PayloadError::Missing(title_field))?,
        url: item
            .html_url
            .clone()
            .ok_or(PayloadError::Missing(url_field))?,
        author: login(item.user.as_ref(), author_field)?,
        labels: item
            .labels
            .iter()
            .flatten()
            .filter_map(|l| l.name.clone())
            .collect(),
        head_sha: item.head.as_ref().and_then(|h| h.sha.clone()),
    })
}

#[cfg(test)]
mod tests;
