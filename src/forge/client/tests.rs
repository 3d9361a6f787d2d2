//! The client against a small local forge (an axum server in the test) that records every
//! request and answers each path as Gitea (or GitHub) would. The full stand-in is
//! `tests/common/gitea.rs`.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::*;
use crate::forge::RepoName;

/// One request as the forge received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    auth: String,
    accept: String,
    body: Value,
}

#[derive(Clone, Default)]
struct Forge {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Files the pull request changes (paged by `page`/`limit` or `page`/`per_page`).
    files: usize,
}

fn pull() -> Value {
    json!({
        "id": 1, "number": 5, "title": "Fix the parser", "body": null,
        "user": {"login": "alice"}, "labels": [{"id": 3, "name": "frontend"}],
        "state": "open", "merged": false, "html_url": "http://forge/acme/widgets/pulls/5",
        "head": {"label": "fix", "ref": "fix", "sha": "abc123"},
        "base": {"label": "main", "ref": "main", "sha": "def456"}
    })
}

fn page_of(uri: &Uri, total: usize) -> Vec<Value> {
    let q: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let get = |k: &str| {
        q.iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.parse::<usize>().ok())
    };
    let page = get("page").unwrap_or(1);
    let per = get("limit").or(get("per_page")).unwrap_or(30);
    ((page - 1) * per..(page * per).min(total))
        .map(|i| json!({"filename": format!("src/f{i}.rs"), "status": "modified", "additions": 1, "deletions": 0, "changes": 1}))
        .collect()
}

async fn answer(
    axum::extract::State(f): axum::extract::State<Forge>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let path = uri.path().trim_start_matches("/api/v1").to_owned();
    f.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().unwrap_or("").to_owned(),
        auth: h("authorization"),
        accept: h("accept"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let accept = h("accept");
    match (method.as_str(), path.as_str()) {
        ("GET", "/repos/acme/widgets/pulls/5") if accept.contains("diff") => {
            "diff --git a/x b/x\n+ünïcode\n".into_response()
        }
        ("GET", "/repos/acme/widgets/pulls/5") => axum::Json(pull()).into_response(),
        ("GET", "/repos/acme/widgets/pulls/5.diff") => "diff --git a/x b/x\n+ünïcode\n".into_response(),
        ("GET", "/repos/acme/widgets/pulls/5/files") => {
            axum::Json(page_of(&uri, f.files)).into_response()
        }
        ("GET", "/repos/acme/widgets/issues/5") => axum::Json(json!({
            "number": 5, "title": "Fix the parser", "body": "it breaks",
            "user": {"login": "alice"}, "labels": [], "state": "open",
            "html_url": "http://forge/acme/widgets/issues/5",
            "pull_request": {"merged": false}
        }))
        .into_response(),
        ("GET", "/repos/acme/widgets/issues/7") => axum::Json(json!({
            "number": 7, "title": "Crash", "body": "", "user": {"login": "bob"},
            "labels": [{"name": "bug"}], "state": "open",
            "html_url": "http://forge/acme/widgets/issues/7", "pull_request": null
        }))
        .into_response(),
        // GitHub pages comments: `f.files` of them, with a `Link` header naming the last page.
        ("GET", "/repos/acme/widgets/issues/5/comments") if uri.query().is_some() => {
            let per = 100;
            let last = f.files.div_ceil(per);
            let page: usize = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .find(|(k, _)| k == "page")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(1);
            let list: Vec<Value> = ((page - 1) * per..(page * per).min(f.files))
                .map(|i| json!({"id": i, "user": {"login": "carol"}, "body": format!("c{i}")}))
                .collect();
            let link = format!(
                "<http://forge/repositories/1/issues/5/comments?per_page=100&page={}>; rel=\"next\", <http://forge/repositories/1/issues/5/comments?per_page=100&page={last}>; rel=\"last\"",
                page + 1
            );
            ([("link", link)], axum::Json(list)).into_response()
        }
        ("GET", "/repos/acme/widgets/pulls/5/reviews") => axum::Json(json!([
            {"id": 1, "user": {"login": "bob"}, "body": "first", "state": "COMMENT"},
            {"id": 2, "user": {"login": "hive"}, "body": null, "state": "APPROVED"},
            {"id": 3, "user": {"login": "hive"}, "body": "last", "state": "REQUEST_CHANGES"}
        ]))
        .into_response(),
        ("GET", "/repos/acme/widgets/issues/5/comments") => axum::Json(
            (0..25)
                .map(|i| json!({"id": i, "user": {"login": "carol"}, "body": format!("c{i}")}))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        ("POST", "/repos/acme/widgets/issues/5/comments") => {
            (StatusCode::CREATED, axum::Json(json!({"id": 1}))).into_response()
        }
        ("POST", "/repos/acme/widgets/issues/5/labels") => axum::Json(json!([])).into_response(),
        ("POST", "/repos/acme/widgets/pulls/5/requested_reviewers") => {
            (StatusCode::CREATED, axum::Json(json!([]))).into_response()
        }
        ("POST", "/repos/acme/widgets/pulls/5/reviews") => {
            axum::Json(json!({"id": 9, "state": "REQUEST_CHANGES"})).into_response()
        }
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": "The target couldn't be found.", "url": "http://forge/api/swagger"})),
        )
            .into_response(),
    }
}

/// A forge on loopback; the client of `kind` against it.
async fn forge(kind: ForgeKind, files: usize) -> (Forge, ForgeClient) {
    let f = Forge {
        files,
        ..Forge::default()
    };
    let app = axum::Router::new().fallback(answer).with_state(f.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let site = Url::parse(&format!("http://{addr}/")).expect("a url");
    let client = ForgeClient::new(
        kind,
        api_base(kind, &site),
        "t0ken-s3cret".into(),
        reqwest::Client::new(),
    );
    (f, client)
}

fn item(n: u64) -> ItemRef {
    ItemRef {
        repo: RepoName::parse("acme/widgets").expect("valid"),
        number: n,
    }
}

fn take(f: &Forge) -> Vec<Seen> {
    std::mem::take(&mut *f.seen.lock().unwrap())
}

#[test]
fn api_bases() {
    let u = |s: &str| Url::parse(s).expect("a url");
    let cases = [
        (
            "gitea at a site's root",
            ForgeKind::Gitea,
            "http://127.0.0.1:3000/",
            "http://127.0.0.1:3000/api/v1",
        ),
        (
            "forgejo under a path",
            ForgeKind::Forgejo,
            "https://h/git/",
            "https://h/git/api/v1",
        ),
        (
            "forgejo without the slash",
            ForgeKind::Forgejo,
            "https://h/git",
            "https://h/git/api/v1",
        ),
        (
            "github as given",
            ForgeKind::Github,
            "https://api.github.com",
            "https://api.github.com/",
        ),
        (
            "github enterprise",
            ForgeKind::Github,
            "https://ghe/api/v3",
            "https://ghe/api/v3",
        ),
    ];
    for (name, kind, site, want) in cases {
        assert_eq!(api_base(kind, &u(site)).as_str(), want, "{name}");
    }
}

#[test]
fn the_token_is_not_in_debug() {
    let c = ForgeClient::new(
        ForgeKind::Gitea,
        Url::parse("http://127.0.0.1/api/v1").expect("a url"),
        "t0ken-s3cret".into(),
        reqwest::Client::new(),
    );
    let d = format!("{c:?}");
    assert!(!d.contains("t0ken-s3cret") && d.contains("api/v1"), "{d}");
}

#[test]
fn review_events_by_kind() {
    let cases = [
        (
            ReviewEvent::RequestChanges,
            ForgeKind::Gitea,
            "REQUEST_CHANGES",
        ),
        (ReviewEvent::Comment, ForgeKind::Forgejo, "COMMENT"),
        (ReviewEvent::Approve, ForgeKind::Forgejo, "APPROVED"),
        (ReviewEvent::Approve, ForgeKind::Github, "APPROVE"),
        (
            ReviewEvent::RequestChanges,
            ForgeKind::Github,
            "REQUEST_CHANGES",
        ),
    ];
    for (e, k, want) in cases {
        assert_eq!(e.wire(k), want, "{e:?} on {k}");
    }
}

#[tokio::test]
async fn gitea_reads() {
    for kind in [ForgeKind::Gitea, ForgeKind::Forgejo] {
        let (f, c) = forge(kind, 120).await;
        let pr = c.get_pr(&item(5)).await.expect("the pull request");
        assert_eq!(
            (
                pr.title.as_str(),
                pr.author.as_str(),
                pr.head_sha.as_str(),
                pr.base.as_str(),
                pr.head.as_str()
            ),
            ("Fix the parser", "alice", "abc123", "main", "fix")
        );
        assert_eq!(pr.labels, ["frontend"]);
        assert_eq!(pr.body, "", "a null body is empty");
        let diff = c.pr_diff(&item(5), 1 << 20).await.expect("the diff");
        assert_eq!(
            diff,
            Diff {
                text: "diff --git a/x b/x\n+ünïcode\n".into(),
                truncated: false
            }
        );
        // Cut inside "ü" (2 bytes): the valid prefix, said truncated.
        let cut = c.pr_diff(&item(5), 21).await.expect("the diff");
        assert_eq!(
            cut,
            Diff {
                text: "diff --git a/x b/x\n+".into(),
                truncated: true
            }
        );
        let files = c.pr_files(&item(5)).await.expect("the files");
        assert_eq!(files.len(), 120);
        assert_eq!(files[119].filename, "src/f119.rs");
        let issue = c.get_issue(&item(7)).await.expect("the issue");
        assert!(!issue.is_pull && issue.labels == ["bug"] && issue.author == "bob");
        assert!(c.get_issue(&item(5)).await.expect("a pull request").is_pull);
        let comments = c.issue_comments(&item(5)).await.expect("the comments");
        assert_eq!(comments.len(), LAST_COMMENTS);
        assert_eq!(comments[0].body, "c5", "the last 20, oldest first");
        let seen = take(&f);
        assert!(
            seen.iter()
                .all(|s| s.auth == "token t0ken-s3cret" && s.method == "GET"),
            "{seen:?}"
        );
        let paths: Vec<String> = seen
            .iter()
            .map(|s| format!("{}?{}", s.path, s.query))
            .collect();
        assert_eq!(
            paths,
            [
                "/repos/acme/widgets/pulls/5?",
                "/repos/acme/widgets/pulls/5.diff?",
                "/repos/acme/widgets/pulls/5.diff?",
                "/repos/acme/widgets/pulls/5/files?page=1&limit=50",
                "/repos/acme/widgets/pulls/5/files?page=2&limit=50",
                "/repos/acme/widgets/pulls/5/files?page=3&limit=50",
                "/repos/acme/widgets/issues/7?",
                "/repos/acme/widgets/issues/5?",
                "/repos/acme/widgets/issues/5/comments?",
            ],
            "{kind}"
        );
    }
}

#[tokio::test]
async fn github_reads() {
    let (f, c) = forge(ForgeKind::Github, 450).await;
    c.get_pr(&item(5)).await.expect("the pull request");
    let diff = c.pr_diff(&item(5), 1 << 20).await.expect("the diff");
    assert!(diff.text.starts_with("diff --git"), "{diff:?}");
    let files = c.pr_files(&item(5)).await.expect("the files");
    assert_eq!(files.len(), MAX_FILES, "capped");
    let seen = take(&f);
    assert!(
        seen.iter().all(|s| s.auth == "Bearer t0ken-s3cret"),
        "{seen:?}"
    );
    assert_eq!(seen[0].accept, "application/vnd.github+json");
    assert_eq!(
        (seen[1].path.as_str(), seen[1].accept.as_str()),
        ("/repos/acme/widgets/pulls/5", "application/vnd.github.diff")
    );
    let pages: Vec<&str> = seen[2..].iter().map(|s| s.query.as_str()).collect();
    assert_eq!(
        pages,
        [
            "per_page=100&page=1",
            "per_page=100&page=2",
            "per_page=100&page=3"
        ]
    );
}

#[tokio::test]
async fn writes_by_kind() {
    let comments = [LineComment {
        path: "src/parser.rs".into(),
        line: 12,
        body: "🔴 off by one".into(),
    }];
    for kind in [ForgeKind::Forgejo, ForgeKind::Github] {
        let (f, c) = forge(kind, 0).await;
        let i = item(5);
        c.comment(&i, "hello").await.expect("commented");
        c.add_labels(&i, &["bug".into(), "frontend".into()])
            .await
            .expect("labelled");
        c.request_review(&i, &["bob".into()])
            .await
            .expect("requested");
        c.review(
            &i,
            ReviewEvent::RequestChanges,
            "🔴 see the line",
            &comments,
            "abc123",
        )
        .await
        .expect("reviewed");
        let seen = take(&f);
        let got: Vec<(String, String, Value)> = seen
            .iter()
            .map(|s| (s.method.clone(), s.path.clone(), s.body.clone()))
            .collect();
        let line_comment = match kind {
            ForgeKind::Github => {
                json!({"path": "src/parser.rs", "line": 12, "side": "RIGHT", "body": "🔴 off by one"})
            }
            _ => json!({"path": "src/parser.rs", "body": "🔴 off by one", "new_position": 12}),
        };
        let post = |p: &str, b: Value| ("POST".to_owned(), p.to_owned(), b);
        assert_eq!(
            got,
            [
                post(
                    "/repos/acme/widgets/issues/5/comments",
                    json!({"body": "hello"})
                ),
                post(
                    "/repos/acme/widgets/issues/5/labels",
                    json!({"labels": ["bug", "frontend"]})
                ),
                post(
                    "/repos/acme/widgets/pulls/5/requested_reviewers",
                    json!({"reviewers": ["bob"]})
                ),
                post(
                    "/repos/acme/widgets/pulls/5/reviews",
                    json!({"body": "🔴 see the line", "event": "REQUEST_CHANGES", "commit_id": "abc123", "comments": [line_comment]})
                ),
            ],
            "{kind}"
        );
        let auth = match kind {
            ForgeKind::Github => "Bearer t0ken-s3cret",
            _ => "token t0ken-s3cret",
        };
        assert!(seen.iter().all(|s| s.auth == auth), "{kind}: {seen:?}");
    }
}

#[tokio::test]
async fn errors_name_the_call_and_the_forge_s_message() {
    let (_f, c) = forge(ForgeKind::Gitea, 0).await;
    let e = c.get_pr(&item(99)).await.expect_err("no such pull request");
    assert_eq!(
        e,
        ForgeError::Status {
            call: "GET /api/v1/repos/acme/widgets/pulls/99".into(),
            status: 404,
            message: "The target couldn't be found.".into(),
        }
    );
    let text = e.to_string();
    assert!(!text.contains("t0ken"), "{text}");
    let e = c.comment(&item(99), "x").await.expect_err("no such issue");
    assert!(
        e.to_string().starts_with(
            "POST /api/v1/repos/acme/widgets/issues/99/comments: the forge answered 404"
        ),
        "{e}"
    );
    let unreachable = ForgeClient::new(
        ForgeKind::Gitea,
        Url::parse("http://127.0.0.1:9/api/v1").expect("a url"),
        "t0ken-s3cret".into(),
        reqwest::Client::new(),
    );
    let e = unreachable
        .get_pr(&item(5))
        .await
        .expect_err("nothing listens");
    assert!(matches!(e, ForgeError::Http { .. }), "{e:?}");
    assert!(!e.to_string().contains("t0ken"), "{e}");
}

#[test]
fn the_last_page_of_a_link_header() {
    struct Case {
        name: &'static str,
        link: &'static str,
        want: Option<usize>,
    }
    let cases = [
        Case {
            name: "GitHub's next and last",
            link: r#"<https://api.github.com/repositories/1/issues/5/comments?per_page=100&page=2>; rel="next", <https://api.github.com/repositories/1/issues/5/comments?per_page=100&page=7>; rel="last""#,
            want: Some(7),
        },
        Case {
            name: "Gitea's, last first",
            link: r#"<http://forge/api/v1/repos/a/b/pulls/5/reviews?limit=50&page=3>; rel="last",<http://forge/api/v1/repos/a/b/pulls/5/reviews?limit=50&page=2>; rel="next""#,
            want: Some(3),
        },
        Case {
            name: "on the last page there is no last",
            link: r#"<https://api.github.com/x?page=1>; rel="first", <https://api.github.com/x?page=6>; rel="prev""#,
            want: None,
        },
        Case {
            name: "a last without a page",
            link: r#"<https://api.github.com/x?per_page=100>; rel="last""#,
            want: None,
        },
        Case {
            name: "not a Link header",
            link: "nonsense",
            want: None,
        },
    ];
    for c in cases {
        assert_eq!(last_page(c.link), c.want, "{}", c.name);
    }
}

#[tokio::test]
async fn github_comments_are_read_from_the_last_page() {
    struct Case {
        name: &'static str,
        total: usize,
        pages: &'static [&'static str],
        first: &'static str,
    }
    let cases = [
        Case {
            name: "one page",
            total: 30,
            pages: &["per_page=100&page=1"],
            first: "c10",
        },
        Case {
            name: "a full last page: the first and the last",
            total: 1450,
            pages: &["per_page=100&page=1", "per_page=100&page=15"],
            first: "c1430",
        },
        Case {
            name: "a short last page: the one before it too",
            total: 310,
            pages: &[
                "per_page=100&page=1",
                "per_page=100&page=4",
                "per_page=100&page=3",
            ],
            first: "c290",
        },
    ];
    for c in cases {
        let (f, client) = forge(ForgeKind::Github, c.total).await;
        let comments = client.issue_comments(&item(5)).await.expect("the comments");
        assert_eq!(comments.len(), LAST_COMMENTS.min(c.total), "{}", c.name);
        assert_eq!(comments[0].body, c.first, "{}", c.name);
        assert_eq!(
            comments.last().map(|c| c.body.clone()),
            Some(format!("c{}", c.total - 1)),
            "{}",
            c.name
        );
        let pages: Vec<String> = take(&f).into_iter().map(|s| s.query).collect();
        assert_eq!(pages, c.pages, "{}", c.name);
    }
}

#[tokio::test]
async fn review_bodies_are_read_paged() {
    for (kind, query) in [
        (ForgeKind::Forgejo, "page=1&limit=50"),
        (ForgeKind::Github, "per_page=100&page=1"),
    ] {
        let (f, c) = forge(kind, 0).await;
        let bodies = c.review_bodies(&item(5)).await.expect("the reviews");
        assert_eq!(
            bodies,
            ["first", "last"],
            "{kind}: a review without a body has none"
        );
        let seen = take(&f);
        assert_eq!(
            (seen[0].path.as_str(), seen[0].query.as_str()),
            ("/repos/acme/widgets/pulls/5/reviews", query),
            "{kind}"
        );
    }
}
