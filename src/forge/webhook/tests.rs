use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).expect("a header name"),
            HeaderValue::from_str(v).expect("a header value"),
        );
    }
    h
}

const SECRET: &[u8] = b"s3cret";
const BODY: &[u8] = br#"{"action":"opened"}"#;

#[test]
fn signatures() {
    let good = sign(SECRET, BODY);
    let other = sign(b"another", BODY);
    let upper = good.to_ascii_uppercase();
    let prefixed = format!("sha256={good}");
    struct Case<'a> {
        name: &'a str,
        kind: ForgeKind,
        headers: Vec<(&'a str, &'a str)>,
        want: Result<(), SignatureError>,
    }
    let cases = [
        Case {
            name: "gitea, right",
            kind: ForgeKind::Gitea,
            headers: vec![("X-Gitea-Signature", &good)],
            want: Ok(()),
        },
        Case {
            name: "forgejo, its own header",
            kind: ForgeKind::Forgejo,
            headers: vec![("X-Forgejo-Signature", &good)],
            want: Ok(()),
        },
        Case {
            name: "forgejo, the X-Gitea twin only",
            kind: ForgeKind::Forgejo,
            headers: vec![("X-Gitea-Signature", &good)],
            want: Ok(()),
        },
        Case {
            name: "forgejo, its own header wins over a right twin",
            kind: ForgeKind::Forgejo,
            headers: vec![
                ("X-Forgejo-Signature", &other),
                ("X-Gitea-Signature", &good),
            ],
            want: Err(SignatureError::Wrong("x-forgejo-signature")),
        },
        Case {
            name: "github, prefixed",
            kind: ForgeKind::Github,
            headers: vec![("X-Hub-Signature-256", &prefixed)],
            want: Ok(()),
        },
        Case {
            name: "github, no prefix",
            kind: ForgeKind::Github,
            headers: vec![("X-Hub-Signature-256", &good)],
            want: Err(SignatureError::NotHex("x-hub-signature-256")),
        },
        Case {
            name: "gitea, the github prefix",
            kind: ForgeKind::Gitea,
            headers: vec![("X-Gitea-Signature", &prefixed)],
            want: Err(SignatureError::NotHex("x-gitea-signature")),
        },
        Case {
            name: "uppercase hex is the same MAC",
            kind: ForgeKind::Gitea,
            headers: vec![("X-Gitea-Signature", &upper)],
            want: Ok(()),
        },
        Case {
            name: "wrong secret",
            kind: ForgeKind::Gitea,
            headers: vec![("X-Gitea-Signature", &other)],
            want: Err(SignatureError::Wrong("x-gitea-signature")),
        },
        Case {
            name: "missing",
            kind: ForgeKind::Gitea,
            headers: vec![],
            want: Err(SignatureError::Missing("x-gitea-signature")),
        },
        Case {
            name: "not hex",
            kind: ForgeKind::Gitea,
            headers: vec![("X-Gitea-Signature", "zz")],
            want: Err(SignatureError::NotHex("x-gitea-signature")),
        },
        Case {
            name: "hex of the wrong length",
            kind: ForgeKind::Gitea,
            headers: vec![("X-Gitea-Signature", &good[..62])],
            want: Err(SignatureError::NotHex("x-gitea-signature")),
        },
        Case {
            name: "odd length",
            kind: ForgeKind::Gitea,
            headers: vec![("X-Gitea-Signature", &good[..63])],
            want: Err(SignatureError::NotHex("x-gitea-signature")),
        },
        Case {
            name: "the wrong header for the kind: gitea's on github",
            kind: ForgeKind::Github,
            headers: vec![("X-Gitea-Signature", &good)],
            want: Err(SignatureError::Missing("x-hub-signature-256")),
        },
        Case {
            name: "the wrong header for the kind: forgejo's on gitea",
            kind: ForgeKind::Gitea,
            headers: vec![("X-Forgejo-Signature", &good)],
            want: Err(SignatureError::Missing("x-gitea-signature")),
        },
    ];
    for c in cases {
        let h = headers(&c.headers);
        assert_eq!(verify(c.kind, &h, SECRET, BODY), c.want, "{}", c.name);
    }
    let h = headers(&[("X-Gitea-Signature", &good)]);
    assert_eq!(
        verify(ForgeKind::Gitea, &h, SECRET, b"{}"),
        Err(SignatureError::Wrong("x-gitea-signature")),
        "another body"
    );
}

#[test]
fn delivery_headers() {
    let long = "a".repeat(129);
    let max = "a".repeat(128);
    struct Case<'a> {
        name: &'a str,
        kind: ForgeKind,
        headers: Vec<(&'a str, &'a str)>,
        want: Result<(&'a str, &'a str), HeaderError>,
    }
    let cases = [
        Case {
            name: "forgejo",
            kind: ForgeKind::Forgejo,
            headers: vec![("X-Forgejo-Delivery", "d-1"), ("X-Forgejo-Event", "issues")],
            want: Ok(("d-1", "issues")),
        },
        Case {
            name: "forgejo, the X-Gitea twins",
            kind: ForgeKind::Forgejo,
            headers: vec![
                ("X-Gitea-Delivery", "d-2"),
                ("X-Gitea-Event", "pull_request"),
            ],
            want: Ok(("d-2", "pull_request")),
        },
        Case {
            name: "github",
            kind: ForgeKind::Github,
            headers: vec![
                ("X-GitHub-Delivery", "72d3162e"),
                ("X-GitHub-Event", "ping"),
            ],
            want: Ok(("72d3162e", "ping")),
        },
        Case {
            name: "128 characters",
            kind: ForgeKind::Gitea,
            headers: vec![("X-Gitea-Delivery", &max), ("X-Gitea-Event", "issues")],
            want: Ok((&max, "issues")),
        },
        Case {
            name: "no delivery",
            kind: ForgeKind::Gitea,
            headers: vec![("X-Gitea-Event", "issues")],
            want: Err(HeaderError::Missing("x-gitea-delivery")),
        },
        Case {
            name: "no event",
            kind: ForgeKind::Github,
            headers: vec![("X-GitHub-Delivery", "d")],
            want: Err(HeaderError::Missing("x-github-event")),
        },
        Case {
            name: "github's headers on gitea",
            kind: ForgeKind::Gitea,
            headers: vec![("X-GitHub-Delivery", "d"), ("X-GitHub-Event", "issues")],
            want: Err(HeaderError::Missing("x-gitea-delivery")),
        },
        Case {
            name: "an id too long",
            kind: ForgeKind::Gitea,
            headers: vec![("X-Gitea-Delivery", &long), ("X-Gitea-Event", "issues")],
            want: Err(HeaderError::Bad {
                header: "x-gitea-delivery",
                expected: "1 to 128 printable ASCII characters",
            }),
        },
        Case {
            name: "an id with a space",
            kind: ForgeKind::Gitea,
            headers: vec![("X-Gitea-Delivery", "a b"), ("X-Gitea-Event", "issues")],
            want: Err(HeaderError::Bad {
                header: "x-gitea-delivery",
                expected: "1 to 128 printable ASCII characters",
            }),
        },
        Case {
            name: "an empty id",
            kind: ForgeKind::Gitea,
            headers: vec![("X-Gitea-Delivery", ""), ("X-Gitea-Event", "issues")],
            want: Err(HeaderError::Bad {
                header: "x-gitea-delivery",
                expected: "1 to 128 printable ASCII characters",
            }),
        },
        Case {
            name: "an event name of other characters",
            kind: ForgeKind::Gitea,
            headers: vec![("X-Gitea-Delivery", "d"), ("X-Gitea-Event", "Issues!")],
            want: Err(HeaderError::Bad {
                header: "x-gitea-event",
                expected: "1 to 64 of [a-z0-9_]",
            }),
        },
    ];
    for c in cases {
        let got = Delivery::from_headers(c.kind, &headers(&c.headers));
        let want = c.want.map(|(id, event)| Delivery {
            id: id.into(),
            event: event.into(),
        });
        assert_eq!(got, want, "{}", c.name);
    }
}

fn user(login: &str) -> Value {
    json!({ "id": 3, "login": login, "login_name": "", "full_name": "", "email": format!("{login}@example.com"),
            "avatar_url": "http://forge.test/avatar", "username": login })
}

fn repository() -> Value {
    json!({ "id": 1, "owner": user("acme"), "name": "widgets", "full_name": "acme/widgets",
            "html_url": "http://forge.test/acme/widgets", "private": false })
}

/// Gitea's `PullRequest` as `convert.ToAPIPullRequest` makes it.
fn gitea_pr(merged: bool) -> Value {
    json!({
        "id": 50, "url": "http://forge.test/acme/widgets/pulls/5", "number": 5, "user": user("alice"),
        "title": "Fix the parser", "body": "It broke.",
        "labels": [{ "id": 1, "name": "frontend", "color": "00aabb" }, { "id": 2, "name": "bug", "color": "ee0701" }],
        "milestone": null, "assignee": null, "assignees": null, "state": if merged { "closed" } else { "open" },
        "is_locked": false, "comments": 0, "html_url": "http://forge.test/acme/widgets/pulls/5",
        "diff_url": "http://forge.test/acme/widgets/pulls/5.diff", "mergeable": true, "merged": merged,
        "merged_at": null, "merge_commit_sha": null, "merged_by": null,
        "base": { "label": "main", "ref": "main", "sha": "1111111", "repo_id": 1, "repo": repository() },
        "head": { "label": "fix", "ref": "fix", "sha": "abc123", "repo_id": 1, "repo": repository() },
        "merge_base": "1111111",
    })
}

fn gitea_issue(is_pull: bool) -> Value {
    let mut v = json!({
        "id": 70, "url": "http://forge.test/api/v1/repos/acme/widgets/issues/7", "html_url": "http://forge.test/acme/widgets/issues/7",
        "number": 7, "user": user("bob"), "original_author": "", "title": "It crashes", "body": "On start.",
        "ref": "", "labels": [{ "id": 2, "name": "bug", "color": "ee0701" }], "milestone": null,
        "assignee": null, "assignees": null, "state": "open", "is_locked": false, "comments": 1,
        "pull_request": null, "repository": { "id": 1, "name": "widgets", "owner": "acme", "full_name": "acme/widgets" },
    });
    if is_pull {
        v["pull_request"] = json!({ "merged": false, "merged_at": null });
        v["html_url"] = json!("http://forge.test/acme/widgets/pulls/7");
    }
    v
}

/// Gitea's `PullRequestPayload`.
fn gitea_pr_payload(action: &str, merged: bool) -> Value {
    json!({ "action": action, "number": 5, "pull_request": gitea_pr(merged), "requested_reviewer": null,
            "repository": repository(), "sender": user("carol"), "commit_id": "", "review": null })
}

fn pr_event(action: Action) -> ForgeEvent {
    ForgeEvent {
        item: ItemRef {
            repo: RepoName::parse("acme/widgets").expect("valid"),
            number: 5,
        },
        kind: ItemKind::PullRequest,
        action,
        actor: "carol".into(),
        title: "Fix the parser".into(),
        url: "http://forge.test/acme/widgets/pulls/5".into(),
        author: "alice".into(),
        labels: vec!["frontend".into(), "bug".into()],
        head_sha: Some("abc123".into()),
    }
}

fn issue_event(kind: ItemKind, action: Action, url: &str) -> ForgeEvent {
    ForgeEvent {
        item: ItemRef {
            repo: RepoName::parse("acme/widgets").expect("valid"),
            number: 7,
        },
        kind,
        action,
        actor: "carol".into(),
        title: "It crashes".into(),
        url: url.into(),
        author: "bob".into(),
        labels: vec!["bug".into()],
        head_sha: None,
    }
}

const ISSUE_URL: &str = "http://forge.test/acme/widgets/issues/7";

#[derive(Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // a test's expectation, made once per row
enum Want {
    Event(ForgeEvent),
    Ignored,
    Err(PayloadError),
}

#[test]
fn payloads() {
    let with = |mut v: Value, path: &[&str], to: Value| {
        let mut at = &mut v;
        for k in &path[..path.len() - 1] {
            at = &mut at[*k];
        }
        at[path[path.len() - 1]] = to;
        v
    };
    let gitea_review = |event_type: &str, content: &str| {
        with(
            gitea_pr_payload("reviewed", false),
            &["review"],
            json!({ "type": event_type, "content": content }),
        )
    };
    let gitea_comment = |is_pull: bool, action: &str| {
        json!({ "action": action, "issue": gitea_issue(is_pull),
                "comment": { "id": 9, "html_url": "http://forge.test/acme/widgets/issues/7#issuecomment-9",
                             "user": user("carol"), "body": "Looks off." },
                "repository": repository(), "sender": user("carol"), "is_pull": is_pull })
    };
    let commented = Action::Commented {
        body: "Looks off.".into(),
        url: "http://forge.test/acme/widgets/issues/7#issuecomment-9".into(),
    };
    let gitea_issue_payload = |action: &str| {
        json!({ "action": action, "number": 7, "issue": gitea_issue(false),
                "repository": repository(), "sender": user("carol"), "commit_id": "" })
    };
    // GitHub's shapes: `pull_request`, `issues`, `issue_comment`, `pull_request_review`.
    let gh_user =
        |login: &str| json!({ "login": login, "id": 1, "type": "User", "site_admin": false });
    let gh_repo = json!({ "id": 1, "name": "widgets", "full_name": "acme/widgets", "owner": gh_user("acme"),
                          "html_url": "https://github.com/acme/widgets" });
    let gh_pr = |merged: bool| {
        json!({ "url": "https://api.github.com/repos/acme/widgets/pulls/5", "id": 1, "number": 5,
                "state": "open", "title": "Fix the parser", "user": gh_user("alice"), "body": null,
                "labels": [{ "id": 1, "name": "frontend", "color": "fff" }, { "id": 2, "name": "bug", "color": "f00" }],
                "html_url": "http://forge.test/acme/widgets/pulls/5", "merged": merged,
                "head": { "label": "alice:fix", "ref": "fix", "sha": "abc123" },
                "base": { "label": "acme:main", "ref": "main", "sha": "111" } })
    };
    let gh_pr_payload = |action: &str, merged: bool| {
        json!({ "action": action, "number": 5, "pull_request": gh_pr(merged), "repository": gh_repo,
                "sender": gh_user("carol") })
    };
    let gh_issue = |pull: bool| {
        let mut v = json!({ "url": "https://api.github.com/repos/acme/widgets/issues/7", "id": 2, "number": 7,
                            "title": "It crashes", "user": gh_user("bob"), "labels": [{ "name": "bug" }],
                            "state": "open", "html_url": ISSUE_URL, "body": "On start." });
        if pull {
            v["pull_request"] =
                json!({ "url": "https://api.github.com/repos/acme/widgets/pulls/7" });
        }
        v
    };
    let gh_comment = |pull: bool| {
        json!({ "action": "created", "issue": gh_issue(pull), "repository": gh_repo, "sender": gh_user("carol"),
                "comment": { "id": 9, "html_url": "http://forge.test/acme/widgets/issues/7#issuecomment-9",
                             "user": gh_user("carol"), "body": "Looks off." } })
    };
    let gh_review = |state: &str| {
        json!({ "action": "submitted", "pull_request": gh_pr(false), "repository": gh_repo, "sender": gh_user("carol"),
                "review": { "id": 80, "user": gh_user("carol"), "body": "Needs work.", "state": state,
                            "html_url": "https://github.com/acme/widgets/pull/5#pullrequestreview-80" } })
    };
    let reviewed = |verdict: Verdict, body: &str| {
        Want::Event(pr_event(Action::Reviewed {
            verdict,
            body: body.into(),
        }))
    };

    struct Case {
        name: &'static str,
        kind: ForgeKind,
        event: &'static str,
        body: Value,
        want: Want,
    }
    let cases = vec![
        Case {
            name: "gitea pull request opened",
            kind: ForgeKind::Gitea,
            event: "pull_request",
            body: gitea_pr_payload("opened", false),
            want: Want::Event(pr_event(Action::Opened)),
        },
        Case {
            name: "forgejo pull request reopened",
            kind: ForgeKind::Forgejo,
            event: "pull_request",
            body: gitea_pr_payload("reopened", false),
            want: Want::Event(pr_event(Action::Reopened)),
        },
        Case {
            name: "gitea pull request edited",
            kind: ForgeKind::Gitea,
            event: "pull_request",
            body: gitea_pr_payload("edited", false),
            want: Want::Event(pr_event(Action::Edited)),
        },
        Case {
            name: "gitea pull request closed",
            kind: ForgeKind::Gitea,
            event: "pull_request",
            body: gitea_pr_payload("closed", false),
            want: Want::Event(pr_event(Action::Closed)),
        },
        Case {
            name: "gitea pull request closed, merged",
            kind: ForgeKind::Gitea,
            event: "pull_request",
            body: gitea_pr_payload("closed", true),
            want: Want::Event(pr_event(Action::Merged)),
        },
        Case {
            name: "gitea pull request synchronized",
            kind: ForgeKind::Gitea,
            event: "pull_request",
            body: gitea_pr_payload("synchronized", false),
            want: Want::Event(pr_event(Action::Pushed)),
        },
        Case {
            name: "gitea pull request labels (the event type as the name)",
            kind: ForgeKind::Gitea,
            event: "pull_request_label",
            body: gitea_pr_payload("label_updated", false),
            want: Want::Event(pr_event(Action::Labeled)),
        },
        Case {
            name: "gitea review requested",
            kind: ForgeKind::Forgejo,
            event: "pull_request",
            body: with(
                gitea_pr_payload("review_requested", false),
                &["requested_reviewer"],
                user("dave"),
            ),
            want: Want::Event(pr_event(Action::ReviewRequested {
                reviewer: "dave".into(),
            })),
        },
        Case {
            name: "gitea review requested of a team (no user): not followed",
            kind: ForgeKind::Gitea,
            event: "pull_request",
            body: gitea_pr_payload("review_requested", false),
            want: Want::Ignored,
        },
        Case {
            name: "gitea review requested of a user without a login",
            kind: ForgeKind::Gitea,
            event: "pull_request",
            body: with(
                gitea_pr_payload("review_requested", false),
                &["requested_reviewer"],
                json!({ "id": 4 }),
            ),
            want: Want::Err(PayloadError::Missing("requested_reviewer.login")),
        },
        Case {
            name: "github review requested of a team: not followed",
            kind: ForgeKind::Github,
            event: "pull_request",
            body: with(
                gh_pr_payload("review_requested", false),
                &["requested_team"],
                json!({ "name": "core", "slug": "core" }),
            ),
            want: Want::Ignored,
        },
        Case {
            name: "gitea pull request assigned: not followed",
            kind: ForgeKind::Gitea,
            event: "pull_request",
            body: gitea_pr_payload("assigned", false),
            want: Want::Ignored,
        },
        Case {
            name: "gitea review approved",
            kind: ForgeKind::Forgejo,
            event: "pull_request_approved",
            body: gitea_review("pull_request_review_approved", "LGTM"),
            want: reviewed(Verdict::Approved, "LGTM"),
        },
        Case {
            name: "gitea review rejected",
            kind: ForgeKind::Gitea,
            event: "pull_request_rejected",
            body: gitea_review("pull_request_review_rejected", "No."),
            want: reviewed(Verdict::ChangesRequested, "No."),
        },
        Case {
            name: "gitea review comment (the event type as the name)",
            kind: ForgeKind::Gitea,
            event: "pull_request_review_comment",
            body: gitea_review("pull_request_review_comment", "Hmm."),
            want: reviewed(Verdict::Commented, "Hmm."),
        },
        Case {
            name: "gitea review with no type: the event name says",
            kind: ForgeKind::Gitea,
            event: "pull_request_rejected",
            body: gitea_review("", "No."),
            want: reviewed(Verdict::ChangesRequested, "No."),
        },
        Case {
            name: "gitea review of an unknown type",
            kind: ForgeKind::Gitea,
            event: "pull_request_approved",
            body: gitea_review("pull_request_review_dismissed", "x"),
            want: Want::Err(PayloadError::Unknown {
                field: "review.type",
                value: "pull_request_review_dismissed".into(),
            }),
        },
        Case {
            name: "gitea issue opened",
            kind: ForgeKind::Gitea,
            event: "issues",
            body: gitea_issue_payload("opened"),
            want: Want::Event(issue_event(ItemKind::Issue, Action::Opened, ISSUE_URL)),
        },
        Case {
            name: "forgejo issue reopened",
            kind: ForgeKind::Forgejo,
            event: "issues",
            body: gitea_issue_payload("reopened"),
            want: Want::Event(issue_event(ItemKind::Issue, Action::Reopened, ISSUE_URL)),
        },
        Case {
            name: "gitea issue edited",
            kind: ForgeKind::Gitea,
            event: "issues",
            body: gitea_issue_payload("edited"),
            want: Want::Event(issue_event(ItemKind::Issue, Action::Edited, ISSUE_URL)),
        },
        Case {
            name: "gitea issue closed",
            kind: ForgeKind::Gitea,
            event: "issues",
            body: gitea_issue_payload("closed"),
            want: Want::Event(issue_event(ItemKind::Issue, Action::Closed, ISSUE_URL)),
        },
        Case {
            name: "gitea issue labels",
            kind: ForgeKind::Gitea,
            event: "issues",
            body: gitea_issue_payload("label_updated"),
            want: Want::Event(issue_event(ItemKind::Issue, Action::Labeled, ISSUE_URL)),
        },
        Case {
            name: "gitea issue milestoned: not followed",
            kind: ForgeKind::Gitea,
            event: "issue_milestone",
            body: gitea_issue_payload("milestoned"),
            want: Want::Ignored,
        },
        Case {
            name: "gitea comment on an issue",
            kind: ForgeKind::Gitea,
            event: "issue_comment",
            body: gitea_comment(false, "created"),
            want: Want::Event(issue_event(ItemKind::Issue, commented.clone(), ISSUE_URL)),
        },
        Case {
            name: "forgejo comment on a pull request",
            kind: ForgeKind::Forgejo,
            event: "issue_comment",
            body: gitea_comment(true, "created"),
            want: Want::Event(issue_event(
                ItemKind::PullRequest,
                commented.clone(),
                "http://forge.test/acme/widgets/pulls/7",
            )),
        },
        Case {
            name: "gitea comment edited: not followed",
            kind: ForgeKind::Gitea,
            event: "issue_comment",
            body: gitea_comment(false, "edited"),
            want: Want::Ignored,
        },
        Case {
            name: "gitea push: not followed, the body not read",
            kind: ForgeKind::Gitea,
            event: "push",
            body: json!("not a payload"),
            want: Want::Ignored,
        },
        Case {
            name: "github pull request opened",
            kind: ForgeKind::Github,
            event: "pull_request",
            body: gh_pr_payload("opened", false),
            want: Want::Event(pr_event(Action::Opened)),
        },
        Case {
            name: "github pull request synchronize",
            kind: ForgeKind::Github,
            event: "pull_request",
            body: gh_pr_payload("synchronize", false),
            want: Want::Event(pr_event(Action::Pushed)),
        },
        Case {
            name: "github pull request closed, merged",
            kind: ForgeKind::Github,
            event: "pull_request",
            body: gh_pr_payload("closed", true),
            want: Want::Event(pr_event(Action::Merged)),
        },
        Case {
            name: "github pull request labeled",
            kind: ForgeKind::Github,
            event: "pull_request",
            body: with(
                gh_pr_payload("labeled", false),
                &["label"],
                json!({ "name": "bug" }),
            ),
            want: Want::Event(pr_event(Action::Labeled)),
        },
        Case {
            name: "github review requested",
            kind: ForgeKind::Github,
            event: "pull_request",
            body: with(
                gh_pr_payload("review_requested", false),
                &["requested_reviewer"],
                gh_user("dave"),
            ),
            want: Want::Event(pr_event(Action::ReviewRequested {
                reviewer: "dave".into(),
            })),
        },
        Case {
            name: "github's synchronized is gitea's word",
            kind: ForgeKind::Github,
            event: "pull_request",
            body: gh_pr_payload("synchronized", false),
            want: Want::Ignored,
        },
        Case {
            name: "github issue opened",
            kind: ForgeKind::Github,
            event: "issues",
            body: json!({ "action": "opened", "issue": gh_issue(false), "repository": gh_repo, "sender": gh_user("carol") }),
            want: Want::Event(issue_event(ItemKind::Issue, Action::Opened, ISSUE_URL)),
        },
        Case {
            name: "github issue unlabeled",
            kind: ForgeKind::Github,
            event: "issues",
            body: json!({ "action": "unlabeled", "issue": gh_issue(false), "repository": gh_repo, "sender": gh_user("carol") }),
            want: Want::Event(issue_event(ItemKind::Issue, Action::Labeled, ISSUE_URL)),
        },
        Case {
            name: "github comment on an issue",
            kind: ForgeKind::Github,
            event: "issue_comment",
            body: gh_comment(false),
            want: Want::Event(issue_event(ItemKind::Issue, commented.clone(), ISSUE_URL)),
        },
        Case {
            name: "github comment on a pull request",
            kind: ForgeKind::Github,
            event: "issue_comment",
            body: gh_comment(true),
            want: Want::Event(issue_event(
                ItemKind::PullRequest,
                commented.clone(),
                ISSUE_URL,
            )),
        },
        Case {
            name: "github review: changes requested",
            kind: ForgeKind::Github,
            event: "pull_request_review",
            body: gh_review("changes_requested"),
            want: reviewed(Verdict::ChangesRequested, "Needs work."),
        },
        Case {
            name: "github review: approved",
            kind: ForgeKind::Github,
            event: "pull_request_review",
            body: gh_review("approved"),
            want: reviewed(Verdict::Approved, "Needs work."),
        },
        Case {
            name: "github review: commented",
            kind: ForgeKind::Github,
            event: "pull_request_review",
            body: gh_review("commented"),
            want: reviewed(Verdict::Commented, "Needs work."),
        },
        Case {
            name: "github review dismissed: not followed",
            kind: ForgeKind::Github,
            event: "pull_request_review",
            body: with(gh_review("dismissed"), &["action"], json!("dismissed")),
            want: Want::Ignored,
        },
        Case {
            name: "github ping: not followed",
            kind: ForgeKind::Github,
            event: "ping",
            body: json!({ "zen": "Keep it logically awesome.", "hook_id": 1 }),
            want: Want::Ignored,
        },
        Case {
            name: "malformed: no action",
            kind: ForgeKind::Gitea,
            event: "pull_request",
            body: json!({ "number": 5 }),
            want: Want::Err(PayloadError::Missing("action")),
        },
        Case {
            name: "malformed: no pull_request",
            kind: ForgeKind::Gitea,
            event: "pull_request",
            body: with(
                gitea_pr_payload("opened", false),
                &["pull_request"],
                Value::Null,
            ),
            want: Want::Err(PayloadError::Missing("pull_request")),
        },
        Case {
            name: "malformed: no repository",
            kind: ForgeKind::Gitea,
            event: "pull_request",
            body: with(
                gitea_pr_payload("opened", false),
                &["repository"],
                Value::Null,
            ),
            want: Want::Err(PayloadError::Missing("repository.full_name")),
        },
        Case {
            name: "malformed: no sender",
            kind: ForgeKind::Gitea,
            event: "issues",
            body: with(gitea_issue_payload("opened"), &["sender"], Value::Null),
            want: Want::Err(PayloadError::Missing("sender.login")),
        },
        Case {
            name: "malformed: no title",
            kind: ForgeKind::Gitea,
            event: "issues",
            body: with(
                gitea_issue_payload("opened"),
                &["issue", "title"],
                Value::Null,
            ),
            want: Want::Err(PayloadError::Missing("issue.title")),
        },
        Case {
            name: "malformed: no author",
            kind: ForgeKind::Gitea,
            event: "pull_request",
            body: with(
                gitea_pr_payload("opened", false),
                &["pull_request", "user"],
                Value::Null,
            ),
            want: Want::Err(PayloadError::Missing("pull_request.user.login")),
        },
        Case {
            name: "malformed: a comment without a body",
            kind: ForgeKind::Gitea,
            event: "issue_comment",
            body: with(
                gitea_comment(false, "created"),
                &["comment", "body"],
                Value::Null,
            ),
            want: Want::Err(PayloadError::Missing("comment.body")),
        },
        Case {
            name: "a repository that is no RepoName",
            kind: ForgeKind::Gitea,
            event: "pull_request",
            body: with(
                gitea_pr_payload("opened", false),
                &["repository", "full_name"],
                json!("acme/../etc"),
            ),
            want: Want::Err(PayloadError::BadRepo(BadRepoName("acme/../etc".into()))),
        },
    ];
    for c in cases {
        let body = serde_json::to_vec(&c.body).expect("serialises");
        let got = match read(c.kind, c.event, &body) {
            Ok(Read::Event(e)) => Want::Event(*e),
            Ok(Read::Ignored(_)) => Want::Ignored,
            Err(e) => Want::Err(e),
        };
        assert_eq!(got, c.want, "{}", c.name);
    }
}

#[test]
fn not_json_is_an_error_and_ignored_says_why() {
    assert!(matches!(
        parse(ForgeKind::Gitea, "pull_request", b"{nope"),
        Err(PayloadError::NotJson(_))
    ));
    assert!(matches!(
        parse(ForgeKind::Gitea, "pull_request", br#"{"action": 5}"#),
        Err(PayloadError::NotJson(_))
    ));
    assert_eq!(
        read(ForgeKind::Github, "push", b"{}"),
        Ok(Read::Ignored("push events are not followed".into()))
    );
    assert_eq!(
        read(
            ForgeKind::Gitea,
            "pull_request",
            br#"{"action":"assigned"}"#
        ),
        Ok(Read::Ignored(
            "pull_request assigned is not followed".into()
        ))
    );
    assert_eq!(parse(ForgeKind::Github, "ping", b"{}"), Ok(None));
}

#[test]
fn events_round_trip_through_json() {
    let e = pr_event(Action::Reviewed {
        verdict: Verdict::ChangesRequested,
        body: "🔴 no".into(),
    });
    let json = serde_json::to_string(&e).expect("serialises");
    assert_eq!(
        serde_json::from_str::<ForgeEvent>(&json).expect("reads back"),
        e
    );
}
