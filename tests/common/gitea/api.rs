//! The stand-in's API: Gitea's JSON shapes (`modules/structs/`), the request bodies it takes
//! (strictly: an unknown field is a violation), and the answer to each request.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{BOT_LOGIN, DEFAULT_LIMIT, Item, MAX_LIMIT, Received, Repo, St};

pub(super) fn user_json(site: &str, login: &str) -> Value {
    json!({"id": login.len(), "login": login, "login_name": "", "full_name": "", "email": format!("{login}@noreply.localhost"),
           "avatar_url": format!("{site}/avatars/{login}"), "html_url": format!("{site}/{login}"),
           "username": login, "is_admin": false})
}

pub(super) fn repo_json(site: &str, r: &Repo) -> Value {
    json!({"id": 1, "owner": user_json(site, &r.owner), "name": r.name,
           "full_name": format!("{}/{}", r.owner, r.name), "private": false, "fork": false,
           "html_url": format!("{site}/{}/{}", r.owner, r.name),
           "clone_url": format!("{site}/{}/{}.git", r.owner, r.name), "default_branch": "main"})
}

fn labels_json(r: &Repo, names: &[String]) -> Value {
    Value::Array(
        names
            .iter()
            .map(|n| {
                let id = r.labels.iter().position(|l| l == n).map_or(0, |p| p + 1);
                json!({"id": id, "name": n, "exclusive": false, "is_archived": false, "color": "e11d21",
                       "description": "", "url": ""})
            })
            .collect(),
    )
}

pub(super) fn issue_json(site: &str, r: &Repo, i: &Item) -> Value {
    let base = format!("{site}/{}/{}", r.owner, r.name);
    let kind = if i.pull.is_some() { "pulls" } else { "issues" };
    json!({"id": i.number + 1000, "url": format!("{site}/api/v1/repos/{}/{}/issues/{}", r.owner, r.name, i.number),
           "html_url": format!("{base}/{kind}/{}", i.number), "number": i.number,
           "user": user_json(site, &i.user), "original_author": "", "original_author_id": 0,
           "title": i.title, "body": i.body, "ref": "", "labels": labels_json(r, &i.labels),
           "milestone": null, "assignee": null, "assignees": null, "state": "open",
           "is_locked": false, "comments": i.comments.len(),
           "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "closed_at": null,
           "due_date": null,
           "pull_request": i.pull.as_ref().map(|_| json!({"merged": false, "merged_at": null,
               "draft": false, "html_url": format!("{base}/pulls/{}", i.number)})),
           "repository": {"id": 1, "name": r.name, "owner": r.owner, "full_name": format!("{}/{}", r.owner, r.name)}})
}

pub(super) fn pull_json(site: &str, r: &Repo, i: &Item) -> Value {
    let p = i.pull.as_ref().expect("a pull request");
    let base = format!("{site}/{}/{}", r.owner, r.name);
    let (adds, dels) = p.files.iter().fold((0, 0), |(a, d), f| (a + f.2, d + f.3));
    json!({"id": i.number + 2000, "url": format!("{base}/pulls/{}", i.number), "number": i.number,
           "user": user_json(site, &i.user), "title": i.title, "body": i.body,
           "labels": labels_json(r, &i.labels), "milestone": null, "assignee": null, "assignees": null,
           "requested_reviewers": i.requested.iter().map(|u| user_json(site, u)).collect::<Vec<_>>(),
           "state": "open", "draft": false, "is_locked": false, "comments": i.comments.len(),
           "additions": adds, "deletions": dels, "changed_files": p.files.len(),
           "html_url": format!("{base}/pulls/{}", i.number),
           "diff_url": format!("{base}/pulls/{}.diff", i.number),
           "patch_url": format!("{base}/pulls/{}.patch", i.number),
           "mergeable": true, "merged": false, "merged_at": null, "merge_commit_sha": null, "merged_by": null,
           "allow_maintainer_edit": false,
           "base": {"label": p.base, "ref": p.base, "sha": "0".repeat(40), "repo_id": 1, "repo": repo_json(site, r)},
           "head": {"label": p.head, "ref": p.head, "sha": p.head_sha, "repo_id": 1, "repo": repo_json(site, r)},
           "merge_base": "0".repeat(40), "due_date": null,
           "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "closed_at": null})
}

fn error(status: StatusCode, site: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"message": message, "url": format!("{site}/api/swagger"), "errors": []})),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateIssueCommentOption {
    body: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueLabelsOption {
    labels: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PullReviewRequestOptions {
    #[serde(default)]
    reviewers: Vec<String>,
    #[serde(default)]
    team_reviewers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePullReviewOptions {
    event: Option<String>,
    #[serde(default)]
    body: String,
    #[serde(default)]
    commit_id: String,
    #[serde(default)]
    comments: Vec<CreatePullReviewComment>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePullReviewComment {
    path: String,
    body: String,
    #[serde(default)]
    old_position: i64,
    #[serde(default)]
    new_position: i64,
}

/// Every request: recorded, then answered by [`answer`]; a 4xx the client caused by breaking
/// the contract is a violation too.
pub(super) async fn handle(
    State(st): State<Arc<Mutex<St>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json_body: Option<Value> = serde_json::from_slice(&body).ok();
    let mut st = st.lock().unwrap();
    let (status, resp, violation) = answer(&mut st, &method, &uri, &headers, &body);
    let line = format!("{method} {}", uri.path());
    if let Some(v) = violation {
        st.violations.push(format!("{line}: {v}"));
    }
    st.received.push(Received {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        body: json_body,
        status: status.as_u16(),
    });
    resp
}

/// The answer to one request: (status, response, the violation if it broke the contract).
fn answer(
    st: &mut St,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> (StatusCode, Response, Option<String>) {
    let site = st.url.clone();
    let fail = |status: StatusCode, msg: &str, violation: bool| {
        (
            status,
            error(status, &site, msg),
            violation.then(|| msg.to_owned()),
        )
    };
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("token {}", st.token)) {
        return fail(
            StatusCode::UNAUTHORIZED,
            "token is required (Authorization: token <T>)",
            true,
        );
    }
    let path = uri.path();
    // The token's own account (`GET /user`, Gitea's `User`): how the hive learns its login.
    if path == "/api/v1/user" {
        if method != Method::GET {
            return fail(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{method} /user is not an endpoint"),
                true,
            );
        }
        let mut me = user_json(&site, BOT_LOGIN);
        me["id"] = json!(1);
        me["is_admin"] = json!(false);
        me["active"] = json!(true);
        me["restricted"] = json!(false);
        me["prohibit_login"] = json!(false);
        me["visibility"] = json!("public");
        me["created"] = json!("2026-01-01T00:00:00Z");
        me["last_login"] = json!("2026-01-01T00:00:00Z");
        return (StatusCode::OK, axum::Json(me).into_response(), None);
    }
    let Some(rest) = path.strip_prefix("/api/v1/repos/") else {
        return fail(
            StatusCode::NOT_FOUND,
            &format!("no such endpoint {path}"),
            true,
        );
    };
    let seg: Vec<&str> = rest.split('/').collect();
    if seg.len() < 4 || !matches!(seg[2], "pulls" | "issues") {
        return fail(
            StatusCode::NOT_FOUND,
            &format!("no such endpoint {path}"),
            true,
        );
    }
    let key = format!("{}/{}", seg[0], seg[1]).to_ascii_lowercase();
    let (num, is_diff) = match seg[3].strip_suffix(".diff") {
        Some(n) => (n, true),
        None => (seg[3], false),
    };
    let Ok(number) = num.parse::<u64>() else {
        return fail(
            StatusCode::NOT_FOUND,
            &format!("{num:?} is not an index"),
            true,
        );
    };
    let users = st.users.clone();
    let Some(repo) = st.repos.get_mut(&key) else {
        return fail(
            StatusCode::NOT_FOUND,
            "The target couldn't be found.",
            false,
        );
    };
    let is_pull = repo.items.get(&number).is_some_and(|i| i.pull.is_some());
    if !repo.items.contains_key(&number) || (seg[2] == "pulls" && !is_pull) {
        return fail(
            StatusCode::NOT_FOUND,
            "The target couldn't be found.",
            false,
        );
    }
    let tail: Vec<&str> = seg[4..].to_vec();
    let parse = |what: &str| -> Result<Value, String> {
        serde_json::from_slice(body).map_err(|e| format!("{what}: the body is not JSON: {e}"))
    };
    macro_rules! body_as {
        ($t:ty, $what:literal) => {
            match parse($what).and_then(|v| {
                serde_json::from_value::<$t>(v).map_err(|e| format!("{}: {e}", $what))
            }) {
                Ok(b) => b,
                Err(e) => return fail(StatusCode::UNPROCESSABLE_ENTITY, &e, true),
            }
        };
    }
    let next_id = st.next_id;
    st.next_id += 1;
    let repo = st.repos.get_mut(&key).expect("looked up above");
    let r_view = Repo {
        owner: repo.owner.clone(),
        name: repo.name.clone(),
        labels: repo.labels.clone(),
        items: BTreeMap::new(),
    };
    let item = repo.items.get_mut(&number).expect("looked up above");
    let ok = |status: StatusCode, v: Value| (status, (status, axum::Json(v)).into_response(), None);
    match (method.as_str(), seg[2], is_diff, tail.as_slice()) {
        ("GET", "pulls", true, []) => {
            let diff = item.pull.as_ref().expect("a pull").diff.clone();
            (
                StatusCode::OK,
                ([("content-type", "text/plain; charset=utf-8")], diff).into_response(),
                None,
            )
        }
        ("GET", "pulls", false, []) => ok(StatusCode::OK, pull_json(&site, &r_view, item)),
        ("GET", "pulls", false, ["files"]) => {
            let q: BTreeMap<String, String> = uri
                .query()
                .map(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .into_owned()
                        .collect()
                })
                .unwrap_or_default();
            let page = q
                .get("page")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(1)
                .max(1);
            let limit = q
                .get("limit")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(DEFAULT_LIMIT)
                .clamp(1, MAX_LIMIT);
            let files = &item.pull.as_ref().expect("a pull").files;
            let base = format!("{site}/{}/{}", r_view.owner, r_view.name);
            let list: Vec<Value> = files
                .iter()
                .skip((page - 1) * limit)
                .take(limit)
                .map(|(f, s, a, d)| {
                    json!({"filename": f, "status": s, "additions": a, "deletions": d, "changes": a + d,
                           "html_url": format!("{base}/src/{f}"), "contents_url": "", "raw_url": format!("{base}/raw/{f}")})
                })
                .collect();
            let total = files.len().to_string();
            (
                StatusCode::OK,
                ([("x-total-count", total)], axum::Json(Value::Array(list))).into_response(),
                None,
            )
        }
        ("GET", "issues", false, []) => ok(StatusCode::OK, issue_json(&site, &r_view, item)),
        ("GET", "issues", false, ["comments"]) => {
            let list: Vec<Value> = item
                .comments
                .iter()
                .map(|(id, u, b)| json!({"id": id, "user": user_json(&site, u), "body": b, "html_url": "",
                                         "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}))
                .collect();
            ok(StatusCode::OK, Value::Array(list))
        }
        ("POST", "issues", false, ["comments"]) => {
            let b = body_as!(CreateIssueCommentOption, "CreateIssueCommentOption");
            if b.body.trim().is_empty() {
                return fail(StatusCode::UNPROCESSABLE_ENTITY, "[Body]: Required", true);
            }
            item.comments
                .push((next_id, BOT_LOGIN.into(), b.body.clone()));
            ok(
                StatusCode::CREATED,
                json!({"id": next_id, "user": user_json(&site, BOT_LOGIN), "body": b.body,
                       "html_url": format!("{site}/{}/{}/issues/{number}#issuecomment-{next_id}", r_view.owner, r_view.name),
                       "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}),
            )
        }
        ("POST", "issues", false, ["labels"]) => {
            let b = body_as!(IssueLabelsOption, "IssueLabelsOption");
            let mut names = Vec::new();
            for l in &b.labels {
                match l {
                    Value::String(s) => names.push(s.clone()),
                    // A label id (ids are 1-based positions here); an unknown one is dropped.
                    Value::Number(n) => {
                        let id = n.as_u64().unwrap_or(0) as usize;
                        if let Some(s) = id.checked_sub(1).and_then(|i| r_view.labels.get(i)) {
                            names.push(s.clone());
                        }
                    }
                    _ => {
                        return fail(
                            StatusCode::BAD_REQUEST,
                            "a label must be an integer or a string",
                            true,
                        );
                    }
                }
            }
            // Unknown names are dropped in silence, as Gitea does.
            for n in names {
                if r_view.labels.contains(&n) && !item.labels.contains(&n) {
                    item.labels.push(n);
                }
            }
            ok(StatusCode::OK, labels_json(&r_view, &item.labels))
        }
        ("GET", "pulls", false, ["reviews"]) => {
            ok(StatusCode::OK, Value::Array(item.reviews.clone()))
        }
        ("POST", "pulls", false, ["requested_reviewers"]) => {
            let b = body_as!(PullReviewRequestOptions, "PullReviewRequestOptions");
            if !b.team_reviewers.is_empty() {
                return fail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "team reviewers need an organisation repository",
                    true,
                );
            }
            if b.reviewers.is_empty() {
                return fail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "no reviewer requested",
                    true,
                );
            }
            if let Some(u) = b.reviewers.iter().find(|u| !users.contains(u)) {
                return fail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("user does not exist [name: {u}]"),
                    true,
                );
            }
            let mut list = Vec::new();
            for u in b.reviewers {
                if !item.requested.contains(&u) {
                    item.requested.push(u.clone());
                }
                list.push(json!({"id": next_id, "user": user_json(&site, &u), "state": "REQUEST_REVIEW",
                                 "body": "", "commit_id": "", "stale": false, "official": false, "dismissed": false}));
            }
            ok(StatusCode::CREATED, Value::Array(list))
        }
        ("POST", "pulls", false, ["reviews"]) => {
            let b = body_as!(CreatePullReviewOptions, "CreatePullReviewOptions");
            let Some(event) = b.event.clone() else {
                return fail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "CreatePullReviewOptions: no event",
                    true,
                );
            };
            if !matches!(
                event.as_str(),
                "APPROVED" | "REQUEST_CHANGES" | "COMMENT" | "PENDING"
            ) {
                return fail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("unknown review event {event:?}"),
                    true,
                );
            }
            if matches!(event.as_str(), "REQUEST_CHANGES" | "COMMENT")
                && b.body.trim().is_empty()
                && b.comments.is_empty()
            {
                return fail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("review event {event} requires a body or a comment"),
                    true,
                );
            }
            let pull = item.pull.as_ref().expect("a pull");
            for c in &b.comments {
                if !pull.files.iter().any(|f| f.0 == c.path) {
                    return fail(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &format!("{}: the pull request does not change this file", c.path),
                        true,
                    );
                }
                if c.new_position <= 0 && c.old_position <= 0 || c.body.trim().is_empty() {
                    return fail(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &format!(
                            "{}: a line comment needs a line (new_position) and a body",
                            c.path
                        ),
                        true,
                    );
                }
            }
            let commit = if b.commit_id.is_empty() {
                pull.head_sha.clone()
            } else {
                b.commit_id.clone()
            };
            let review = json!({"id": next_id, "user": user_json(&site, BOT_LOGIN), "team": null,
                "state": event, "body": b.body, "commit_id": commit, "stale": false, "official": true,
                "dismissed": false, "comments_count": b.comments.len(),
                "comments": b.comments.iter().map(|c| json!({"path": c.path, "body": c.body,
                    "old_position": c.old_position, "new_position": c.new_position})).collect::<Vec<_>>(),
                "submitted_at": "2026-01-01T00:00:00Z",
                "html_url": format!("{site}/{}/{}/pulls/{number}#issuecomment-{next_id}", r_view.owner, r_view.name),
                "pull_request_url": format!("{site}/{}/{}/pulls/{number}", r_view.owner, r_view.name)});
            item.reviews.push(review.clone());
            ok(StatusCode::OK, review)
        }
        _ => fail(
            StatusCode::NOT_FOUND,
            &format!("no such endpoint {method} {path}"),
            true,
        ),
    }
}

#[cfg(test)]
mod tests {}
