//! Forge webhooks into the hive, on a real Synapse, against the Gitea stand-in
//! (`tests/common/gitea.rs`): a good delivery makes the repository's room and the pull
//! request's thread, seen by the operator, and a notice in the routed agent's inbox; a bad
//! signature (403), a missing one (401), a replayed delivery id (409), a body over
//! `max_webhook_bytes` (413), an unknown server (404), a repository not followed and a push
//! (200, ignored) post nothing anywhere (fenced by a good
//! delivery after them). An agent without a `[[forge.grant]]` calling `forge_comment` is
//! refused and told, audited `refused`, and the forge receives nothing; a comment holding a
//! planted secret or the forge token is refused too. A granted comment reaches the forge and
//! is said in the thread (the control that shows the refusals were not a broken set-up).
//! A second hive, without `login`, shows the review fixes: its own echoes tell nobody, a
//! review holds to the head the agent read, a 🟢-only review comments.

mod common;

use std::time::{Duration, Instant};

use common::gitea::{self, Gitea, PullSeed};
use common::{Operator, Seen, TestHive};
use matrix_sdk::Room;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "hh-forge-token-3c9e1a7b5d";
const SECRET: &str = "hh-webhook-secret-8f2d6b4a1c";
const PLANTED: &str = "hh-planted-SECRET-forge-5e7a9c";
const REPO: &str = "acme/widgets";
const MAX_BYTES: usize = 16 * 1024;

/// The stand-in with `acme/widgets`, pull request #5 by alice and issue #6 by carol.
pub async fn seeded_gitea() -> Gitea {
    let g = Gitea::start(TOKEN).await;
    for u in ["alice", "bob", "carol"] {
        g.add_user(u);
    }
    g.add_repo(REPO, &["bug", "frontend", "backend"]);
    g.add_pull(
        REPO,
        PullSeed {
            number: 5,
            title: "Fix the parser".into(),
            body: "It dropped the last token.".into(),
            user: "alice".into(),
            head_sha: "5e1f0c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f".into(),
            base: "main".into(),
            head: "fix-parser".into(),
            files: vec![
                ("src/parser.rs".into(), "modified".into(), 3, 1),
                ("web/app.css".into(), "modified".into(), 1, 0),
            ],
            diff: "diff --git a/src/parser.rs b/src/parser.rs\n--- a/src/parser.rs\n+++ b/src/parser.rs\n@@ -10,3 +10,5 @@\n fn parse() {\n-    let t = next();\n+    let t = next().unwrap();\n+    // the last token\n+    push(t);\n }\n".into(),
            labels: vec![],
        },
    );
    g.add_issue(
        REPO,
        6,
        "The widget is blue",
        "It should be green.",
        "carol",
    );
    // A repository the forge has and the hive does not follow.
    g.add_repo("acme/other", &[]);
    g.add_issue("acme/other", 1, "Elsewhere", "Not ours.", "carol");
    g
}

/// A scripted agent granted `tools` on `acme/*`.
fn granted_bot(tools: &[&str]) -> String {
    let tools: Vec<String> = tools.iter().map(|t| format!("{t:?}")).collect();
    format!(
        "{}[[forge.grant]]\nrepos = [\"acme/*\"]\ntools = [{}]\n",
        common::scripted("v1"),
        tools.join(", ")
    )
}

/// `[forge]` for one Forgejo server `forgejo` at the stand-in, following `acme/widgets`.
fn forge_toml(g: &Gitea, token_file: &str, secret_file: &str, agents: &str) -> String {
    format!(
        "[forge]\n{agents}max_webhook_bytes = {MAX_BYTES}\n\
         [[forge.servers]]\nname = \"forgejo\"\nkind = \"forgejo\"\nurl = \"{}\"\n\
         token_file = {token_file:?}\nwebhook_secret_file = {secret_file:?}\nrepos = [\"{REPO}\"]\n",
        g.url
    )
}

/// Joins `#<alias>`, waiting until the room exists (a forge room is made on the first delivery).
async fn join_when_made(op: &Operator, hive: &TestHive, alias: &str) -> Room {
    let server = hive.cfg.server_name.to_string();
    let id = matrix_sdk::ruma::RoomAliasId::parse(format!("#{alias}:{server}")).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        match op.client.join_room_by_id_or_alias((&*id).into(), &[]).await {
            Ok(room) => return room,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!(
                "#{alias}:{server} was never made (or the operator not invited): {e}\n{}",
                common::logs_tail(hive.dir.path())
            ),
        }
    }
}

/// The root of `<kind> acme/widgets#<n>`'s thread, posted by `bot` (`**<kind> acme/widgets#<n>**: <title> — <url>`).
fn root<'a>(m: &'a [Seen], bot: &str, kind: &str, n: u64) -> Option<&'a Seen> {
    let head = format!("{kind} {REPO}#{n}");
    m.iter()
        .find(|x| x.sender == bot && x.thread.is_none() && x.body.contains(&head))
}

/// The lines in the thread under `root`.
fn lines<'a>(m: &'a [Seen], root: &Seen) -> Vec<&'a Seen> {
    m.iter()
        .filter(|x| x.thread.as_ref() == Some(&root.event_id))
        .collect()
}

/// The core's forge notices in an inbox.
fn notices(m: &[Seen], bot: &str) -> Vec<String> {
    m.iter()
        .filter(|x| x.sender == bot && x.body.starts_with("forge: "))
        .map(|x| x.body.clone())
        .collect()
}

/// A comment's or review's body without the core's hidden re-run marker
/// (`\n\n<!-- hh:<digest> -->`, when the core adds one); anything else is left as it is.
fn unmarked(body: &str) -> &str {
    match body.rsplit_once("\n\n<!-- hh:") {
        Some((words, mark))
            if mark.ends_with(" -->")
                && mark[..mark.len() - 4]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric()) =>
        {
            words
        }
        _ => body,
    }
}

async fn status_and_body(r: reqwest::Response) -> (u16, String) {
    let s = r.status().as_u16();
    (s, r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_verified_and_forge_tools_are_granted() {
    let g = seeded_gitea().await;
    let (_t, token_file) = common::secret_file("forge.token", &format!("{TOKEN}\n"));
    let (_s, secret_file) = common::secret_file("forge.secret", &format!("{SECRET}\n"));
    let (_p, planted_file) = common::secret_file("planted.key", &format!("{PLANTED}\n"));
    let mut hive = TestHive::with_config(
        &[
            ("granted", granted_bot(&["forge_comment", "forge_discuss"])),
            ("stranger", common::scripted("v1")),
        ],
        &format!(
            "[secrets]\nfiles = [{planted_file:?}]\n{}",
            forge_toml(
                &g,
                &token_file,
                &secret_file,
                "triage_agent = \"granted\"\n"
            )
        ),
    )
    .await;
    hive.start_core();
    let op = hive.operator().await;
    let bot = format!("@{}:{}", hive.cfg.sender_localpart, hive.cfg.server_name);
    let hook = format!("http://{}/_hyperhive/forge/forgejo", hive.cfg.listen);

    // A good delivery: 200 naming it; the room, the thread root and its first line; the
    // triage agent's inbox has the core's notice.
    let opened = g.pull_request_payload(REPO, 5, "opened", "alice");
    let size = serde_json::to_vec(&opened).unwrap().len();
    assert!(size < MAX_BYTES, "the good payload fits the cap: {size}");
    let (status, body) =
        status_and_body(gitea::deliver(&hook, SECRET, "pull_request", "d-1", &opened).await).await;
    assert_eq!(status, 200, "a good delivery: {body}");
    let answer: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(answer, json!({"ok": true, "delivery": "d-1"}));

    let room = join_when_made(&op, &hive, "forge-acme-widgets").await;
    let msgs = op
        .wait_until(&room, WAIT, "#5's thread root and its opened line", |m| {
            root(m, &bot, "pull request", 5).is_some_and(|r| !lines(m, r).is_empty())
        })
        .await;
    let root5 = root(&msgs, &bot, "pull request", 5).unwrap().clone();
    assert!(
        root5.body.contains("Fix the parser") && root5.body.contains("/acme/widgets/pulls/5"),
        "the root names the title and the url: {}",
        root5.body
    );
    let line = lines(&msgs, &root5)[0].clone();
    assert_eq!(line.sender, bot, "the hive's bot says what happened");
    assert!(line.body.starts_with("alice opened"), "{}", line.body);

    let inbox = op.join("agent-granted").await;
    let seen = op
        .wait_until(&inbox, WAIT, "the triage notice for #5", |m| {
            !notices(m, &bot).is_empty()
        })
        .await;
    let notice = notices(&seen, &bot).remove(0);
    assert!(
        notice.starts_with("forge: pull request acme/widgets#5 opened by alice: Fix the parser"),
        "{notice}"
    );
    assert!(notice.contains("\nroles: triage"), "{notice}");
    assert!(
        notice.contains("\nfiles: src/parser.rs, web/app.css"),
        "{notice}"
    );

    // Refusals: nothing is looked at before the signature holds; a replay is dropped.
    let body = serde_json::to_vec(&g.issue_payload(REPO, 6, "opened", "carol")).unwrap();
    let mut bad_sig = gitea::forgejo_headers("not-the-secret", "issues", "d-bad", &body);
    let (s, b) = status_and_body(gitea::post_hook(&hook, &bad_sig, body.clone()).await).await;
    assert_eq!(s, 403, "a wrong signature: {b}");
    bad_sig.retain(|(k, _)| !k.ends_with("Signature") && !k.starts_with("X-Hub-Signature"));
    let (s, b) = status_and_body(gitea::post_hook(&hook, &bad_sig, body.clone()).await).await;
    assert_eq!(s, 401, "no signature: {b}");
    let (s, b) =
        status_and_body(gitea::deliver(&hook, SECRET, "pull_request", "d-1", &opened).await).await;
    assert_eq!(s, 409, "a replayed delivery id: {b}");
    assert!(b.contains("delivery d-1 was already received"), "{b}");
    let mut huge = g.issue_payload(REPO, 6, "opened", "carol");
    huge["issue"]["body"] = json!("x".repeat(MAX_BYTES));
    let (s, b) =
        status_and_body(gitea::deliver(&hook, SECRET, "issues", "d-huge", &huge).await).await;
    assert_eq!(s, 413, "a body over max_webhook_bytes: {b}");
    let nowhere = format!("http://{}/_hyperhive/forge/nope", hive.cfg.listen);
    let issue6 = g.issue_payload(REPO, 6, "opened", "carol");
    let (s, b) =
        status_and_body(gitea::deliver(&nowhere, SECRET, "issues", "d-x", &issue6).await).await;
    assert_eq!(s, 404, "an unknown server: {b}");
    // Followed by nobody, or not an event the hive follows: taken (200) and ignored.
    let other = g.issue_payload("acme/other", 1, "opened", "carol");
    let (s, b) =
        status_and_body(gitea::deliver(&hook, SECRET, "issues", "d-other", &other).await).await;
    assert_eq!(s, 200, "a repository not followed: {b}");
    assert!(b.contains("acme/other is not followed"), "{b}");
    let push = json!({"ref": "refs/heads/main", "before": "0".repeat(40), "after": "1".repeat(40),
                      "commits": [], "repository": other["repository"], "sender": other["sender"]});
    let (s, b) =
        status_and_body(gitea::deliver(&hook, SECRET, "push", "d-push", &push).await).await;
    assert_eq!(s, 200, "a push (not followed): {b}");
    assert!(b.contains("\"ignored\""), "{b}");

    // The fence: a good delivery after the refused ones; once its line is there, nothing else
    // was posted (the refused ones used issue #6 and delivery ids d-bad, d-huge, d-x; the ignored ones
    // acme/other).
    let (s, b) =
        status_and_body(gitea::deliver(&hook, SECRET, "issues", "d-2", &issue6).await).await;
    assert_eq!(s, 200, "the fence delivery: {b}");
    let msgs = op
        .wait_until(&room, WAIT, "#6's thread root and its opened line", |m| {
            root(m, &bot, "issue", 6).is_some_and(|r| !lines(m, r).is_empty())
        })
        .await;
    let root6 = root(&msgs, &bot, "issue", 6).unwrap().clone();
    let roots: Vec<&Seen> = msgs.iter().filter(|x| x.thread.is_none()).collect();
    assert_eq!(
        roots.len(),
        2,
        "one root per item, nothing else: {roots:#?}"
    );
    assert_eq!(
        lines(&msgs, &root5).len(),
        1,
        "the replay posted nothing in #5's thread"
    );
    assert_eq!(
        lines(&msgs, &root6).len(),
        1,
        "one line for #6: {:#?}",
        lines(&msgs, &root6)
    );
    let seen = op
        .wait_until(&inbox, WAIT, "the triage notice for #6", |m| {
            notices(m, &bot)
                .iter()
                .any(|n| n.starts_with("forge: issue acme/widgets#6 opened by carol"))
        })
        .await;
    assert_eq!(
        notices(&seen, &bot).len(),
        2,
        "one notice per good delivery: {:#?}",
        notices(&seen, &bot)
    );

    // A forge tool without the grant: not offered, refused and told, audited, nothing sent.
    let mut stranger = common::hello_socket(&hive, "stranger", "tools.sock", WAIT).await;
    let offered = tool_names(&mut stranger).await;
    assert!(
        !offered.iter().any(|t| t.starts_with("forge_")),
        "no forge tool is offered without a grant: {offered:?}"
    );
    let (text, err) = common::call_tool(
        &mut stranger,
        "forge_comment",
        json!({"repo": REPO, "number": 5, "body": "let me in"}),
    )
    .await;
    assert!(err, "refused: {text}");
    assert!(
        text.contains("stranger may not call forge_comment on acme/widgets")
            && text.contains("[[forge.grant]]"),
        "told why: {text}"
    );
    let mut granted = common::hello_socket(&hive, "granted", "tools.sock", WAIT).await;
    let offered = tool_names(&mut granted).await;
    assert!(
        offered.contains(&"forge_comment".to_owned())
            && !offered.contains(&"forge_review".to_owned()),
        "exactly the granted forge tools are offered: {offered:?}"
    );
    // Granted, but the body holds a planted secret, or the forge token itself.
    let (text, err) = common::call_tool(
        &mut granted,
        "forge_comment",
        json!({"repo": REPO, "number": 5, "body": format!("the key is {PLANTED}")}),
    )
    .await;
    assert!(
        err && text.contains("a secret from"),
        "a planted secret is refused, naming the kind: {text}"
    );
    assert!(
        !text.contains(PLANTED),
        "the refusal does not repeat the secret: {text}"
    );
    let (text, err) = common::call_tool(
        &mut granted,
        "forge_comment",
        json!({"repo": REPO, "number": 5, "body": format!("token {TOKEN}")}),
    )
    .await;
    assert!(
        err && text.contains("secret"),
        "the forge token is refused: {text}"
    );
    assert!(!text.contains(TOKEN), "{text}");
    // Granted, but a repository the hive does not follow.
    let (text, err) = common::call_tool(
        &mut granted,
        "forge_comment",
        json!({"repo": "acme/other", "number": 1, "body": "hello"}),
    )
    .await;
    assert!(err, "a repository no server follows: {text}");
    assert!(
        g.writes().is_empty(),
        "the forge received no write: {:#?}",
        g.writes()
    );

    // The control: a granted, clean comment reaches the forge and is said in the thread.
    let (text, err) = common::call_tool(
        &mut granted,
        "forge_comment",
        json!({"repo": REPO, "number": 5, "body": "Looks like the parser fix, thanks."}),
    )
    .await;
    assert!(!err, "a granted comment: {text}");
    let writes = g.writes();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert_eq!(
        writes[0].path,
        "/api/v1/repos/acme/widgets/issues/5/comments"
    );
    let sent = writes[0].body.clone().expect("a JSON comment");
    assert_eq!(
        sent.as_object().map(|o| o.len()),
        Some(1),
        "only a body: {sent}"
    );
    assert_eq!(
        unmarked(sent["body"].as_str().unwrap_or("")),
        "Looks like the parser fix, thanks.",
        "the agent's words, nothing else but the hidden marker: {sent}"
    );
    assert_eq!(writes[0].status, 201);
    let agent = format!("@granted:{}", hive.cfg.server_name);
    op.wait_until(&room, WAIT, "granted's comment said in #5's thread", |m| {
        lines(m, &root5)
            .iter()
            .any(|x| x.sender == agent && x.body.contains("Looks like the parser fix"))
    })
    .await;

    // The audit has the refusal, in the store and through `hive audit`.
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    let log = store.audit_log(1000).unwrap();
    assert!(
        log.iter().any(|e| e.actor == "stranger"
            && e.action == "forge_comment"
            && e.outcome == "refused"
            && e.detail
                .as_deref()
                .is_some_and(|d| d.contains("[[forge.grant]]"))),
        "the refused call is audited: {:#?}",
        log.iter()
            .filter(|e| e.action.starts_with("forge_"))
            .map(|e| (&e.actor, &e.action, &e.outcome, &e.detail))
            .collect::<Vec<_>>()
    );
    assert!(
        log.iter()
            .any(|e| e.actor == "granted" && e.action == "forge_comment" && e.outcome == "ok"),
        "the granted call is audited ok"
    );
    let out = hive.hive(&["audit"]).output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.lines().any(|l| l.contains("stranger")
            && l.contains("forge_comment")
            && l.contains("refused")),
        "`hive audit` shows the refusal:\n{out}"
    );
    for secret in [TOKEN, SECRET, PLANTED] {
        assert!(!out.contains(secret), "a secret reached the audit");
        assert!(
            !hive.core_log().contains(secret),
            "a secret reached the core's log"
        );
    }
    assert_eq!(
        g.violations(),
        Vec::<String>::new(),
        "the hive broke Gitea's contract"
    );
    assert_eq!(hive.stop_core().code(), Some(0));
}

/// The review fixes, on a hive whose `[[forge.servers]]` gives no `login`:
/// - (part B) the core learns its own account with `GET /api/v1/user`, and a comment by that
///   account (an agent's own write echoed back) tells no agent and is no bot line in the
///   thread: fenced by a comment by carol on the same issue, which tells its owner;
/// - (part C) `forge_review` requires the `head_sha` the agent read: after a push moved the
///   head, a review on the old one is refused ("moved … read it again") and the forge gets
///   nothing; read again, the review goes through on the new head (the control);
/// - (part C) without `[forge] review_may_approve`, a 🟢-only review is sent as `COMMENT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_echoes_tell_nobody_and_reviews_hold_to_the_head_read() {
    const H1: &str = "5e1f0c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f";
    const H2: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
    let g = seeded_gitea().await;
    let (_t, token_file) = common::secret_file("forge.token", &format!("{TOKEN}\n"));
    let (_s, secret_file) = common::secret_file("forge.secret", &format!("{SECRET}\n"));
    let mut hive = TestHive::with_config(
        &[(
            "owner",
            granted_bot(&["forge_get_pr", "forge_review", "forge_comment"]),
        )],
        &format!(
            "{}[[forge.routes]]\nauthors = [\"carol\"]\nagent = \"owner\"\n",
            forge_toml(&g, &token_file, &secret_file, "")
        ),
    )
    .await;
    hive.start_core();
    let op = hive.operator().await;
    let bot = format!("@{}:{}", hive.cfg.sender_localpart, hive.cfg.server_name);
    let hook = format!("http://{}/_hyperhive/forge/forgejo", hive.cfg.listen);

    // The echo: a comment by the hive's own account on carol's issue (owner's lane), then the
    // fence, a comment by carol. Deliveries are posted oldest first, so once carol's notice is
    // in owner's inbox, the echo's would be there before it.
    let echo = g.issue_comment_payload(REPO, 6, gitea::BOT_LOGIN, "Labelled bug.");
    let (s, b) =
        status_and_body(gitea::deliver(&hook, SECRET, "issue_comment", "d-echo", &echo).await)
            .await;
    assert_eq!(s, 200, "the echo is taken: {b}");
    let fence = g.issue_comment_payload(REPO, 6, "carol", "Any news?");
    let (s, b) =
        status_and_body(gitea::deliver(&hook, SECRET, "issue_comment", "d-carol", &fence).await)
            .await;
    assert_eq!(s, 200, "the fence is taken: {b}");
    let inbox = op.join("agent-owner").await;
    let seen = op
        .wait_until(&inbox, WAIT, "the notice of carol's comment", |m| {
            notices(m, &bot)
                .iter()
                .any(|n| n.starts_with("forge: issue acme/widgets#6 commented on by carol"))
        })
        .await;
    let told = notices(&seen, &bot);
    assert_eq!(
        told.len(),
        1,
        "the hive's own comment told nobody: {told:#?}"
    );
    assert!(
        g.received()
            .iter()
            .any(|r| r.method == "GET" && r.path == "/api/v1/user"),
        "the core asked the forge who its token is"
    );
    // In the room, the echo is no line of the bot's either (the agent says its own writes).
    let room = join_when_made(&op, &hive, "forge-acme-widgets").await;
    let msgs = op
        .wait_until(&room, WAIT, "carol's comment in #6's thread", |m| {
            root(m, &bot, "issue", 6).is_some_and(|r| {
                lines(m, r)
                    .iter()
                    .any(|x| x.body.starts_with("carol commented"))
            })
        })
        .await;
    let root6 = root(&msgs, &bot, "issue", 6).unwrap().clone();
    let said: Vec<&str> = lines(&msgs, &root6)
        .iter()
        .map(|x| x.body.as_str())
        .collect();
    assert!(
        !said.iter().any(|l| l.contains(gitea::BOT_LOGIN)),
        "no bot line for the hive's own comment: {said:#?}"
    );

    // forge_review takes the head it reviews.
    let mut owner = common::hello_socket(&hive, "owner", "tools.sock", WAIT).await;
    let schema = {
        use hyperhive::wire::protocol::{Request, Response};
        match owner.call(&Request::ListTools {}).await.unwrap() {
            Response::Tools { tools } => {
                tools
                    .into_iter()
                    .find(|t| t.name == "forge_review")
                    .expect("forge_review is offered to its grantee")
                    .input_schema
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(
        schema["required"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x == "head_sha")),
        "forge_review requires head_sha: {schema}"
    );
    let (text, err) = common::call_tool(
        &mut owner,
        "forge_get_pr",
        json!({"repo": REPO, "number": 5}),
    )
    .await;
    assert!(!err, "forge_get_pr: {text}");
    let pr: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(pr["head_sha"], H1, "{text}");

    // 🟢 only, no `review_may_approve`: a comment, not an approval.
    let (text, err) = common::call_tool(
        &mut owner,
        "forge_review",
        json!({"repo": REPO, "number": 5, "body": "🟢 The fix reads right.", "head_sha": H1}),
    )
    .await;
    assert!(!err, "a review on the head read: {text}");
    let reviews = g.reviews_of(REPO, 5);
    assert_eq!(reviews.len(), 1, "{reviews:#?}");
    assert_eq!(
        reviews[0]["state"], "COMMENT",
        "a 🟢-only review comments unless review_may_approve: {}",
        reviews[0]
    );
    assert_eq!(reviews[0]["commit_id"], H1, "{}", reviews[0]);

    // A push moves the head; a review on the one read is refused, and nothing is posted.
    g.set_head(REPO, 5, H2);
    let (text, err) = common::call_tool(
        &mut owner,
        "forge_review",
        json!({"repo": REPO, "number": 5, "body": "🟢 Still right.", "head_sha": H1}),
    )
    .await;
    assert!(err, "a review on a moved head is refused: {text}");
    assert!(
        text.contains("moved") && text.contains("read it again"),
        "told why: {text}"
    );
    assert_eq!(
        g.reviews_of(REPO, 5).len(),
        1,
        "the forge got no second review"
    );
    let posted = |g: &Gitea| {
        g.writes()
            .iter()
            .filter(|r| r.path.ends_with("/pulls/5/reviews"))
            .count()
    };
    assert_eq!(posted(&g), 1, "no review was even tried: {:#?}", g.writes());

    // The control: read again, the review goes through on the new head.
    let (text, err) = common::call_tool(
        &mut owner,
        "forge_get_pr",
        json!({"repo": REPO, "number": 5}),
    )
    .await;
    assert!(!err, "forge_get_pr: {text}");
    let pr: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(pr["head_sha"], H2, "{text}");
    let (text, err) = common::call_tool(
        &mut owner,
        "forge_review",
        json!({"repo": REPO, "number": 5, "body": "🔴 The push dropped the test.", "head_sha": H2}),
    )
    .await;
    assert!(!err, "a review on the new head: {text}");
    let reviews = g.reviews_of(REPO, 5);
    assert_eq!(reviews.len(), 2, "{reviews:#?}");
    assert_eq!(reviews[1]["state"], "REQUEST_CHANGES", "{}", reviews[1]);
    assert_eq!(reviews[1]["commit_id"], H2, "{}", reviews[1]);

    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    let log = store.audit_log(1000).unwrap();
    assert!(
        log.iter()
            .any(|e| e.actor == "owner" && e.action == "forge_review" && e.outcome == "refused"),
        "the review on a moved head is audited refused"
    );
    assert_eq!(
        g.violations(),
        Vec::<String>::new(),
        "the hive broke Gitea's contract"
    );
    assert_eq!(hive.stop_core().code(), Some(0));
}

/// The tools the core offers an agent.
async fn tool_names(c: &mut hyperhive::wire::client::SocketClient) -> Vec<String> {
    use hyperhive::wire::protocol::{Request, Response};
    match c.call(&Request::ListTools {}).await.unwrap() {
        Response::Tools { tools } => tools.into_iter().map(|t| t.name).collect(),
        other => panic!("unexpected {other:?}"),
    }
}

/// The stand-in itself holds to Gitea's contract (no hive involved): the auth header, 404s,
/// 422s for what Gitea refuses, unknown label names dropped, the review's fields, and the
/// Forgejo signature.
#[tokio::test]
async fn the_gitea_stand_in_answers_as_gitea_does() {
    let g = seeded_gitea().await;
    let http = reqwest::Client::new();
    let api = format!("{}/api/v1/repos/{REPO}", g.url);
    let call = |method: reqwest::Method, path: &str, body: Option<Value>, auth: bool| {
        let mut req = http.request(method, format!("{api}{path}"));
        if auth {
            req = req.header("Authorization", format!("token {TOKEN}"));
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let r = req.send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.text().await.unwrap())
        }
    };
    use reqwest::Method as M;
    struct Case {
        name: &'static str,
        method: M,
        path: &'static str,
        body: Option<Value>,
        auth: bool,
        status: u16,
        has: &'static str,
        violation: bool,
    }
    let cases = [
        Case {
            name: "no token",
            method: M::GET,
            path: "/pulls/5",
            body: None,
            auth: false,
            status: 401,
            has: "\"message\"",
            violation: true,
        },
        Case {
            name: "a pull request",
            method: M::GET,
            path: "/pulls/5",
            body: None,
            auth: true,
            status: 200,
            has: "5e1f0c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f",
            violation: false,
        },
        Case {
            name: "its diff",
            method: M::GET,
            path: "/pulls/5.diff",
            body: None,
            auth: true,
            status: 200,
            has: "+++ b/src/parser.rs",
            violation: false,
        },
        Case {
            name: "its files",
            method: M::GET,
            path: "/pulls/5/files?page=1&limit=1",
            body: None,
            auth: true,
            status: 200,
            has: "src/parser.rs",
            violation: false,
        },
        Case {
            name: "an issue is no pull request",
            method: M::GET,
            path: "/pulls/6",
            body: None,
            auth: true,
            status: 404,
            has: "couldn't be found",
            violation: false,
        },
        Case {
            name: "an unknown number",
            method: M::GET,
            path: "/issues/99",
            body: None,
            auth: true,
            status: 404,
            has: "couldn't be found",
            violation: false,
        },
        Case {
            name: "a pull request as an issue",
            method: M::GET,
            path: "/issues/5",
            body: None,
            auth: true,
            status: 200,
            has: "\"pull_request\":{",
            violation: false,
        },
        Case {
            name: "a comment",
            method: M::POST,
            path: "/issues/6/comments",
            body: Some(json!({"body": "hi"})),
            auth: true,
            status: 201,
            has: "\"body\":\"hi\"",
            violation: false,
        },
        Case {
            name: "a comment without body",
            method: M::POST,
            path: "/issues/6/comments",
            body: Some(json!({})),
            auth: true,
            status: 422,
            has: "body",
            violation: true,
        },
        Case {
            name: "an unknown field",
            method: M::POST,
            path: "/issues/6/comments",
            body: Some(json!({"body": "x", "bodyy": 1})),
            auth: true,
            status: 422,
            has: "bodyy",
            violation: true,
        },
        Case {
            name: "labels, one unknown",
            method: M::POST,
            path: "/issues/6/labels",
            body: Some(json!({"labels": ["bug", "nope"]})),
            auth: true,
            status: 200,
            has: "\"name\":\"bug\"",
            violation: false,
        },
        Case {
            name: "a reviewer",
            method: M::POST,
            path: "/pulls/5/requested_reviewers",
            body: Some(json!({"reviewers": ["bob"]})),
            auth: true,
            status: 201,
            has: "REQUEST_REVIEW",
            violation: false,
        },
        Case {
            name: "an unknown reviewer",
            method: M::POST,
            path: "/pulls/5/requested_reviewers",
            body: Some(json!({"reviewers": ["mallory"]})),
            auth: true,
            status: 422,
            has: "mallory",
            violation: true,
        },
        Case {
            name: "an unknown review event",
            method: M::POST,
            path: "/pulls/5/reviews",
            body: Some(json!({"event": "APPROVE", "body": "ok"})),
            auth: true,
            status: 422,
            has: "APPROVE",
            violation: true,
        },
        Case {
            name: "a review with nothing",
            method: M::POST,
            path: "/pulls/5/reviews",
            body: Some(json!({"event": "COMMENT", "body": ""})),
            auth: true,
            status: 422,
            has: "requires a body",
            violation: true,
        },
        Case {
            name: "a comment on no line",
            method: M::POST,
            path: "/pulls/5/reviews",
            body: Some(
                json!({"event": "COMMENT", "body": "b", "comments": [{"path": "src/parser.rs", "body": "x"}]}),
            ),
            auth: true,
            status: 422,
            has: "needs a line",
            violation: true,
        },
        Case {
            name: "a request-changes review",
            method: M::POST,
            path: "/pulls/5/reviews",
            body: Some(
                json!({"event": "REQUEST_CHANGES", "body": "🔴 unwrap", "commit_id": "5e1f0c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f", "comments": [{"path": "src/parser.rs", "body": "🔴 panics", "new_position": 11}]}),
            ),
            auth: true,
            status: 200,
            has: "\"state\":\"REQUEST_CHANGES\"",
            violation: false,
        },
        Case {
            name: "its reviews",
            method: M::GET,
            path: "/pulls/5/reviews",
            body: None,
            auth: true,
            status: 200,
            has: "\"state\":\"REQUEST_CHANGES\"",
            violation: false,
        },
        Case {
            name: "an unknown endpoint",
            method: M::DELETE,
            path: "/issues/5",
            body: None,
            auth: true,
            status: 404,
            has: "no such endpoint",
            violation: true,
        },
    ];
    for c in cases {
        let before = g.violations().len();
        let (status, body) = call(c.method, c.path, c.body, c.auth).await;
        assert_eq!(status, c.status, "{}: {body}", c.name);
        assert!(body.contains(c.has), "{}: {body}", c.name);
        assert_eq!(
            g.violations().len() - before,
            usize::from(c.violation),
            "{}: {:?}",
            c.name,
            g.violations()
        );
    }
    // The token's own account, as Gitea's `GET /user` answers it; the token is required.
    let me = format!("{}/api/v1/user", g.url);
    let r = http
        .get(&me)
        .header("Authorization", format!("token {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let user: Value = r.json().await.unwrap();
    assert_eq!(user["login"], gitea::BOT_LOGIN, "{user}");
    assert!(user["id"].is_u64(), "{user}");
    let before = g.violations().len();
    let r = http.get(&me).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "GET /user without the token");
    assert_eq!(g.violations().len(), before + 1);
    // A push moves a pull request's head.
    g.set_head(REPO, 5, "1".repeat(40).as_str());
    let p = g.pull_request_payload(REPO, 5, "synchronized", "alice");
    assert_eq!(p["pull_request"]["head"]["sha"], "1".repeat(40));
    g.set_head(REPO, 5, "5e1f0c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f");

    assert_eq!(
        g.labels_of(REPO, 6),
        vec!["bug".to_owned()],
        "the unknown label was dropped"
    );
    assert_eq!(g.requested_of(REPO, 5), vec!["bob".to_owned()]);
    assert_eq!(g.comments_of(REPO, 6).len(), 1);
    let reviews = g.reviews_of(REPO, 5);
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0]["comments"][0]["new_position"], 11);

    // Signed as Forgejo signs: the lowercase hex HMAC-SHA256 of the body, in every header twin
    // (RFC 4231 test case 2 checks the HMAC itself).
    assert_eq!(
        gitea::signature("Jefe", b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    let h = gitea::forgejo_headers(SECRET, "issues", "d-9", b"{}");
    let get = |k: &str| h.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let sig = gitea::signature(SECRET, b"{}");
    assert_eq!(get("X-Forgejo-Signature"), Some(sig.clone()));
    assert_eq!(get("X-Gitea-Signature"), Some(sig.clone()));
    assert_eq!(get("X-Hub-Signature-256"), Some(format!("sha256={sig}")));
    assert_eq!(get("X-Forgejo-Delivery").as_deref(), Some("d-9"));
    assert_eq!(get("X-Gitea-Event").as_deref(), Some("issues"));
    // Payloads shaped like Gitea's.
    let p = g.pull_request_payload(REPO, 5, "opened", "alice");
    assert_eq!(
        p["pull_request"]["head"]["sha"],
        "5e1f0c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f"
    );
    assert_eq!(p["repository"]["full_name"], REPO);
    assert_eq!(p["sender"]["login"], "alice");
    let c = g.issue_comment_payload(REPO, 5, "bob", "why?");
    assert_eq!(c["is_pull"], true);
    assert_eq!(c["comment"]["body"], "why?");
}
